from pathlib import Path

import pytest

from fhir_service import servicedb


def test_the_folder_of_a_sqlite_file_is_made(tmp_path: Path) -> None:
    path = tmp_path / "state" / "service.db"

    engine = servicedb.make_engine(f"sqlite:///{path}")
    servicedb.ping(engine)
    engine.dispose()

    assert path.exists()


@pytest.mark.parametrize("uri", ["true", "1"])
def test_a_sqlite_uri_filename_makes_no_folder_where_the_process_runs(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "service.db"
    writable = servicedb.make_engine(f"sqlite:///{path}")
    servicedb.migrate(writable)
    writable.dispose()
    running_in = tmp_path / "cwd"
    running_in.mkdir()
    monkeypatch.chdir(running_in)

    read_only = servicedb.make_engine(f"sqlite:///file:{path}?mode=ro&uri={uri}")
    servicedb.ping(read_only)
    read_only.dispose()

    assert list(running_in.iterdir()) == []
