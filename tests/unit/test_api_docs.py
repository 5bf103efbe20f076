"""docs/api.md's field tables are generated from the API's declarations (flowrun.schema, by
scripts/generate): the checked-in doc is what the generator makes of them, and only the tables
change when a declaration does."""

from __future__ import annotations

import pytest

from flowrun.schema import SCHEMAS, derive, flowrun
from flowrun.schema.common import CONFIG_MAP_KEY, LABEL, SUBDOMAIN
from flowrun.schema.cronflowrun import SCHEDULE, TIME_ZONE
from flowrun.schema.nodes import Int
from scripts import api_docs
from scripts.generate import API_DOC


def test_the_field_tables_of_the_api_docs_are_up_to_date() -> None:
    doc = API_DOC.read_text()
    assert api_docs.render(doc) == doc, "docs/api.md is out of date with flowrun.schema: run scripts/generate"


def test_a_changed_description_changes_the_generated_table_and_the_prose_stays() -> None:
    doc = API_DOC.read_text()
    parallelism = Int("At most this many task pods at once. Default: no limit.", minimum=1, maximum=500, setting=True)
    changed = api_docs.render(doc, derive(flowrun.SPEC.with_field("parallelism", parallelism)))
    assert "| `parallelism` | int32, 1..500 | no limit | At most this many task pods at once. |" in changed
    # Outside the markers nothing moves.
    outside = [part.split("<!-- END GENERATED", 1)[-1] for part in doc.split("<!-- BEGIN GENERATED")]
    assert all(part in changed for part in outside)


def test_every_table_has_its_markers() -> None:
    doc = API_DOC.read_text()
    for section in api_docs.SECTIONS:
        assert doc.count(f"<!-- BEGIN GENERATED: {section} -->") == 1, section
        assert doc.count(f"<!-- END GENERATED: {section} -->") == 1, section
    with pytest.raises(ValueError, match="has no markers"):
        api_docs.render(doc.replace("<!-- END GENERATED: status -->", ""), SCHEMAS)


def test_the_docs_name_the_formats_the_declarations_name() -> None:
    assert {
        LABEL.pattern: "DNS-1123 label",
        SUBDOMAIN.pattern: "DNS-1123 subdomain",
        CONFIG_MAP_KEY.pattern: "ConfigMap key",
        SCHEDULE.pattern: "cron schedule (see [Schedules](semantics.md#schedules))",
        TIME_ZONE.pattern: "IANA time zone name",
    } == api_docs.PATTERNS
