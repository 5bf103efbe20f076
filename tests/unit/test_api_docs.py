"""docs/api.md's field tables are generated from the CRD (scripts/gen_api_docs.py): the checked-in
doc is what the generator makes of the checked-in CRD."""

from __future__ import annotations

import copy

import pytest

from scripts import gen_api_docs


def test_the_field_tables_of_the_api_docs_are_up_to_date_with_the_crd() -> None:
    doc = gen_api_docs.DOC_FILE.read_text()
    assert gen_api_docs.render(doc, gen_api_docs.schema()) == doc, (
        "docs/api.md is out of date with crds/flowrun.yaml: run .venv/bin/python scripts/gen_api_docs.py"
    )


def test_a_changed_description_changes_the_generated_table_and_the_prose_stays() -> None:
    doc = gen_api_docs.DOC_FILE.read_text()
    root = copy.deepcopy(gen_api_docs.schema())
    parallelism = root["properties"]["spec"]["properties"]["parallelism"]
    parallelism["description"] = "At most this many task pods at once. Default: no limit."
    parallelism["maximum"] = 500
    changed = gen_api_docs.render(doc, root)
    assert "| `parallelism` | int32, 1..500 | no limit | At most this many task pods at once. |" in changed
    # Outside the markers nothing moves.
    outside = [part.split("<!-- END GENERATED", 1)[-1] for part in doc.split("<!-- BEGIN GENERATED")]
    assert all(part in changed for part in outside)


def test_every_table_has_its_markers() -> None:
    doc = gen_api_docs.DOC_FILE.read_text()
    for section in gen_api_docs.SECTIONS:
        assert doc.count(f"<!-- BEGIN GENERATED: {section} -->") == 1, section
        assert doc.count(f"<!-- END GENERATED: {section} -->") == 1, section
    with pytest.raises(SystemExit, match="has no markers"):
        gen_api_docs.render(doc.replace("<!-- END GENERATED: status -->", ""), gen_api_docs.schema())
