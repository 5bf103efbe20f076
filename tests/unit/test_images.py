"""The image builds' pure parts: content keys, references, recipes, and how the machine's pip and
apt configuration are read (devcluster/images.py). The builds themselves: tests/e2e/test_images.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from devcluster import build, images

REPO = Path(__file__).resolve().parents[2]


def test_content_key_ignores_order_and_changes_with_every_input() -> None:
    parts: dict[str, str | bytes] = {"ref": "flowrun.local/x:1", "versions": '{"a": "1"}', "file:a": b"-abc"}
    key = images.content_key(parts)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert images.content_key(dict(reversed(parts.items()))) == key
    assert images.content_key({**parts, "versions": '{"a": "2"}'}) != key
    assert images.content_key({**parts, "file:a": b"-abd"}) != key
    assert images.content_key({**parts, "file:b": b""}) != key
    # A value cannot move across the label boundary and give the same key.
    assert images.content_key({"ab": "c"}) != images.content_key({"a": "bc"})


def test_file_parts_cover_content_and_the_executable_bit(tmp_path: Path) -> None:
    script = tmp_path / "recipe" / "check"
    script.parent.mkdir()
    script.write_text("echo one\n")
    first = images.content_key(images.file_parts(tmp_path, [script]))
    assert list(images.file_parts(tmp_path, [script])) == ["file:recipe/check"]
    script.chmod(0o755)
    executable = images.content_key(images.file_parts(tmp_path, [script]))
    assert executable != first
    script.write_text("echo two\n")
    assert images.content_key(images.file_parts(tmp_path, [script])) not in (first, executable)


def test_operator_context_is_the_dockerfile_and_what_it_copies_without_generated_files(tmp_path: Path) -> None:
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "unrelated.txt"):
        (tmp_path / name).write_text(name)
    package = tmp_path / "operator" / "flowrun"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "operator" / "flowrun_operator.egg-info").mkdir()
    (tmp_path / "operator" / "flowrun_operator.egg-info" / "PKG-INFO").write_text("")
    files = {path.relative_to(tmp_path).as_posix() for path in images.operator_context_files(tmp_path)}
    assert files == {"Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "operator/flowrun/__init__.py"}


def test_the_real_operator_context_holds_the_package_sources() -> None:
    files = {path.relative_to(REPO).as_posix() for path in images.operator_context_files()}
    assert {"Dockerfile", "pyproject.toml", "operator/flowrun/cli.py"} <= files
    assert not any("__pycache__" in name for name in files)


def test_references_are_local_names_with_a_version_tag() -> None:
    assert images.reference("python-dask", "2022.12.1") == "flowrun.local/python-dask:2022.12.1"
    for name, tag in (("pause", "latest"), ("Pause", "1"), ("pause", ""), ("pau se", "1"), ("pause", "1:2")):
        with pytest.raises(ValueError, match=r"image (name|tag)"):
            images.reference(name, tag)


def test_the_image_constants_follow_the_scheme() -> None:
    refs = [images.PAUSE_IMAGE, images.SHELL_IMAGE, images.DASK_IMAGE, images.OPERATOR_IMAGE]
    assert len(set(refs)) == 4
    for ref in refs:
        name, tag = ref.removeprefix("flowrun.local/").rsplit(":", 1)
        assert images.reference(name, tag) == ref


def test_the_operator_tag_is_the_project_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert images.OPERATOR_IMAGE.endswith(f":{version}")


def test_archives_live_under_the_cache_root_by_name_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_CACHE", str(tmp_path))
    assert (
        images.archive_path("shell", "0123456789abcdef") == tmp_path / "images" / "shell-0123456789abcdef" / "image.tar"
    )
    assert REPO not in images.archive_path("shell", "0").parents


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [("1:1.35.0-4+deb12u1+b1", "1.35.0"), ("2022.12.1+ds.1-3", "2022.12.1"), ("3.11.2-1+b1", "3.11.2"), ("1.0", "1.0")],
)
def test_upstream_version_drops_epoch_revision_and_repack_suffix(debian: str, upstream: str) -> None:
    assert images.upstream_version(debian) == upstream


def test_recipe_lines_drop_comments_and_blanks(tmp_path: Path) -> None:
    recipe = tmp_path / "packages.txt"
    recipe.write_text("# header\npython3\n\n  python3-pandas  # for frames\n")
    assert images.recipe_lines(recipe) == ["python3", "python3-pandas"]


def test_the_python_recipe_has_dask_pandas_pip_and_a_pinned_pyarrow() -> None:
    packages = images.recipe_lines(images.RECIPES / "dask-packages.txt")
    assert {"python3", "python3-distributed", "python3-pandas", "python3-pip", "python-is-python3"} <= set(packages)
    wheels = images.recipe_lines(images.RECIPES / "dask-requirements.txt")
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9.]+", wheel) for wheel in wheels), wheels
    assert any(wheel.startswith("pyarrow==") for wheel in wheels)


def test_pip_settings_put_environment_settings_in_global_and_let_them_win() -> None:
    listed = "\n".join(
        [
            ":env:.timeout='60'",
            "global.timeout='10'",
            "global.cert='/etc/ssl/certs/bundle.crt'",
            "install.find-links='/srv/wheels\\n/srv/more'",
        ]
    )
    assert images.pip_settings(listed) == {
        "global": {"timeout": "60", "cert": "/etc/ssl/certs/bundle.crt"},
        "install": {"find-links": "/srv/wheels\n/srv/more"},
    }
    assert images.pip_settings("") == {}


def test_pip_mounts_bring_the_config_and_the_local_paths_it_names(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pip_conf = tmp_path / "pip.conf"
    settings = {
        "global": {"cert": str(bundle), "timeout": "60", "index-url": "https://index.example/simple"},
        "install": {"find-links": f"{wheels}\n{tmp_path / 'missing'}", "cert": str(bundle)},
    }
    assert images.pip_mounts(settings, pip_conf) == [
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
        "-v",
        f"{bundle}:{bundle}:ro",
        "-v",
        f"{wheels}:{wheels}:ro",
    ]


def test_the_mirror_is_the_suites_main_repository() -> None:
    listed = "\n".join(
        [
            "http://mirror.example/debian-security/ bookworm-security main",
            "http://mirror.example/debian/ bookworm-updates main",
            "http://mirror.example/debian/ bookworm contrib",
            "http://mirror.example/debian/ bookworm main",
        ]
    )
    assert images.mirror_for(listed, "bookworm") == "http://mirror.example/debian/"
    with pytest.raises(images.ImageError, match="no apt source for Debian trixie main"):
        images.mirror_for(listed, "trixie")


def test_the_pause_program_is_a_module_of_the_binary_build() -> None:
    module = next(module for module in build.MODULES if module.directory == "pause")
    assert module.binaries == {"pause": "."}
    assert (build.GO_MODULES_DIR / "pause" / "go.mod").read_text().startswith("module ")
