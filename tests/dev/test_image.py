"""Build the module image with ./build-images.sh and check what a node would extract.

The build goes to a throw-away buildah storage (CONTAINERS_STORAGE_CONF pointing at a
temp graphroot/runroot), which is emptied and deleted afterwards.
"""

import json
import os
import py_compile
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPOBASE = "localhost/bypass-test"
IMAGE = f"{REPOBASE}/nethvoice-bypass"
LABELS = {
    "org.nethserver.rootfull": "1",
    "org.nethserver.max-per-node": "1",
    "org.nethserver.tcp-ports-demand": "1",
    "org.nethserver.min-core": "3.16.0",
    "org.nethserver.authorizations": "nethvoice-proxy@node:routeadm",
    "org.nethserver.images": "",
}
NOT_SHIPPED = {"tests", "dev", ".venv", ".git", "__pycache__", "node_modules", "bench"}


def tree(top):
    """{relative path: (kind, executable)} below top, like extract-image would see it."""
    listing = {}
    for path in sorted(top.rglob("*")):
        mode = path.lstat().st_mode
        kind = "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"
        listing[str(path.relative_to(top))] = (kind, kind == "file" and bool(mode & stat.S_IXUSR))
    return listing


def source_imageroot():
    return {p: v for p, v in tree(ROOT / "imageroot").items()
            if "__pycache__" not in Path(p).parts and not p.endswith(".pyc")}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("buildah"):
        pytest.fail("needs root and buildah (make deb-deps)")
    work = tmp_path_factory.mktemp("image")
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{work}/root"\nrunroot = "{work}/run"\n')
    (work / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_DRIVER", "GITHUB_ACTIONS")}
    env.update(CONTAINERS_STORAGE_CONF=str(work / "storage.conf"), REPOBASE=REPOBASE,
               CI="true", GITHUB_OUTPUT=str(work / "github_output"), TMPDIR=str(work / "tmp"))
    # What any local test run leaves behind: the build must not ship it
    py_compile.compile(str(ROOT / "imageroot/pypkg/nethvoice_bypass/__init__.py"))
    expected_imageroot = source_imageroot()
    started = time.monotonic()
    result = subprocess.run(["./build-images.sh"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1800)
    seconds = time.monotonic() - started
    # Both env and the result are needed by the checks, also after a failed build
    built = {"env": env, "work": work, "result": result, "seconds": seconds,
             "imageroot": expected_imageroot}
    try:
        yield built
    finally:
        for command in (["umount", "--all"], ["rm", "--all"], ["rmi", "--all", "--force"]):
            subprocess.run(["buildah", *command], env=env, capture_output=True)
        shutil.rmtree(work)


def buildah(build, *args):
    result = subprocess.run(["buildah", *args], env=build["env"], capture_output=True, text=True)
    assert result.returncode == 0, f"buildah {args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def rootfs(build):
    assert build["result"].returncode == 0, build["result"].stdout + build["result"].stderr
    container = buildah(build, "from", IMAGE).strip()
    yield Path(buildah(build, "mount", container).strip())
    buildah(build, "umount", container)
    buildah(build, "rm", container)


def test_build_succeeds_and_reports_the_image(build):
    result = build["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"build-images.sh took {build['seconds']:.1f} s")
    # CI mode: the image list for ns8-github-actions' publish step
    assert (build["work"] / "github_output").read_text() == f"images={IMAGE}\n"


def test_build_leaves_no_temp_files(build):
    assert build["result"].returncode == 0, build["result"].stderr
    assert list((build["work"] / "tmp").iterdir()) == []


def test_labels_and_entrypoint(build):
    assert build["result"].returncode == 0, build["result"].stderr
    config = json.loads(buildah(build, "inspect", "--type", "image", IMAGE))["OCIv1"]["config"]
    labels = config["Labels"]
    assert {k: labels.get(k) for k in LABELS} == LABELS
    demands = [k for k in labels if k.endswith("-ports-demand")]
    assert demands == ["org.nethserver.tcp-ports-demand"], "one TCP port, the metrics exporter's; no UDP port"
    assert config["Entrypoint"] == ["/"]
    # As cluster add-module parses them: selector:role, no wildcard, never owner
    for authz in labels["org.nethserver.authorizations"].split():
        selector, role = authz.split(":")
        assert "*" not in authz and "owner" not in role.split(","), authz


def test_only_imageroot_and_ui_are_shipped(rootfs):
    assert sorted(p.name for p in rootfs.iterdir()) == ["imageroot", "ui"]
    shipped = [p for p in tree(rootfs) if NOT_SHIPPED & set(Path(p).parts) or p.endswith(".pyc")]
    assert shipped == []


def test_imageroot_is_the_source_tree(build, rootfs):
    assert (rootfs / "imageroot/actions").is_dir()
    assert (rootfs / "imageroot/pypkg/nethvoice_bypass/__init__.py").is_file()
    # Same files, same executable bits (steps must stay executable)
    assert tree(rootfs / "imageroot") == build["imageroot"]


def test_state_include_lists_the_intent_store_and_audit_log(rootfs):
    lines = (rootfs / "imageroot/etc/state-include.conf").read_text().splitlines()
    assert lines == ["state/bypass.json", "state/audit.jsonl", "state/audit.1.jsonl"]


def test_ui(build, rootfs):
    assert (rootfs / "ui").is_dir()
    dist = ROOT / "ui" / "dist"
    if dist.is_dir():
        assert tree(rootfs / "ui") == tree(dist)
    else:
        # No UI yet: an empty /ui (extract-ui needs it) and a warning
        assert list((rootfs / "ui").iterdir()) == []
        assert "WARNING" in build["result"].stderr
