"""The enforced sandbox's box as bubblewrap arguments: what is hidden, what comes back, in which order."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.tools.backends import BackendConfig, sandbox_paths
from processors.tools.jail import SandboxProfile, bwrap_argv
from processors.tools.registry import default_registry
from processors.tools.sandbox_pool import profile_for

CFG = BackendConfig(docs_dir="/srv/docs", sql_path="/state/backends/shop.db",
                    tickets_path="/state/backends/tickets.db", smtp_host="127.0.0.1", smtp_port=25,
                    mail_from="a@example.com")


@pytest.fixture(autouse=True)
def _bwrap_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.tools.jail.shutil.which", lambda name: "/usr/bin/bwrap")
    monkeypatch.setattr("processors.tools.jail.os.path.exists", lambda path: True)
    monkeypatch.setattr("processors.tools.jail.os.path.isdir", lambda path: True)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/root")))


def mounts(argv: list[str]) -> list[tuple[str, str]]:
    """(option, destination) of every mount in order."""
    out = []
    for i, arg in enumerate(argv):
        if arg in ("--ro-bind", "--bind"):
            out.append((arg, argv[i + 2]))
        elif arg in ("--tmpfs", "--remount-ro"):
            out.append((arg, argv[i + 1]))
    return out


def argv_for(tool: str) -> list[str]:
    spec = default_registry().get(tool)
    assert spec is not None
    return bwrap_argv(profile_for(spec, CFG), command=["/py", "-m", "x"], code=["/root/.pyenv", "/state/.."],
                      hide=["/state"], env={"PATH": "/bin"})


def test_only_tools_registered_with_the_network_share_it() -> None:
    assert "--share-net" in argv_for("send_email")
    for tool in ("search_docs", "query_sql", "create_ticket"):
        argv = argv_for(tool)
        assert "--share-net" not in argv and "--unshare-all" in argv


def test_home_is_hidden_before_the_code_comes_back_and_the_state_directory_after() -> None:
    order = mounts(argv_for("query_sql"))
    assert order[0] == ("--ro-bind", "/")
    assert order.index(("--tmpfs", "/root")) < order.index(("--ro-bind", "/root/.pyenv"))
    assert order.index(("--ro-bind", "/state/..")) < order.index(("--tmpfs", "/state"))
    # The backend's files come back read-only after the state directory is hidden.
    assert order.index(("--tmpfs", "/state")) < order.index(("--ro-bind", "/state/backends/shop.db"))
    assert not any(kind == "--bind" for kind, _ in order)
    assert order[-2:] == [("--tmpfs", "/tmp/tool"), ("--remount-ro", "/tmp")]


def test_the_ticket_store_folder_is_writable_and_the_database_beside_it_is_not() -> None:
    order = mounts(argv_for("create_ticket"))
    writable = order.index(("--bind", "/state/backends"))
    assert ("--ro-bind", "/state/backends/shop.db") in order[writable:]


def test_the_environment_is_only_the_one_given() -> None:
    argv = argv_for("search_docs")
    at = argv.index("--setenv")
    assert "--clearenv" in argv and argv[at + 1:at + 3] == ["PATH", "/bin"]
    assert argv.count("--setenv") == 1 and argv[-3:] == ["/py", "-m", "x"]


def test_entry_point_tools_get_no_backend_paths() -> None:
    assert sandbox_paths("my_plugin", CFG) == ((), ())
    assert SandboxProfile().writable == ()
