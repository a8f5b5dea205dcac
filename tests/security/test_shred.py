"""Finding 13: deleting a patient destroys its data key on disk too, not only in the
row: no old row version, freed page or write-ahead log keeps the wrapped key."""
import glob
import os

from sqlalchemy import text

from renkei import db
from tests.helpers import team


def _files(api) -> list[str]:
    url = api.app.config["RENKEI"].database_url
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        return [p for p in (path, path + "-wal") if os.path.exists(p)]
    with api.app.app_context():
        db.session.execute(text("CHECKPOINT"))  # needs superuser: the test server's own role
        data = db.session.execute(text("SHOW data_directory")).scalar()
        rel = db.session.execute(text("SELECT pg_relation_filepath('patients')")).scalar()
        db.session.commit()
    return glob.glob(os.path.join(data, rel) + "*")


def _stored(paths) -> bytes:
    return b"".join(open(p, "rb").read() for p in paths)


def test_a_shredded_key_is_gone_from_the_database_files(api):
    pid = team(api)
    with api.app.app_context():
        wrapped = db.session.execute(text("SELECT wrapped_key FROM patients WHERE id = :p"), {"p": pid}).scalar()
        db.session.commit()
    assert wrapped and bytes(wrapped) in _stored(_files(api))  # the test can see a key where it is
    assert api.call("admin", "DELETE", f"/api/v1/patients/{pid}").status_code == 204
    assert bytes(wrapped) not in _stored(_files(api))
