"""Finding 13: deleting a patient destroys its data key on disk too, not only in the
row: no old row version, freed page or write-ahead log keeps the wrapped key (nor,
since issue 12, the patient's name-prefix tokens)."""

import glob
import os

from sqlalchemy import text

from renkei.common import db
from tests.helpers import team


def _files(api, table="patients") -> list[str]:
    url = api.app.config["RENKEI"].database_url
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        return [p for p in (path, path + "-wal") if os.path.exists(p)]
    with api.app.app_context():
        db.session.execute(text("CHECKPOINT"))  # needs superuser: the test server's own role
        data = db.session.execute(text("SHOW data_directory")).scalar()
        rel = db.session.execute(text("SELECT pg_relation_filepath(:t)"), {"t": table}).scalar()
        db.session.commit()
    return glob.glob(os.path.join(data, rel) + "*")


def _stored(paths) -> bytes:
    return b"".join(open(p, "rb").read() for p in paths)


def test_a_shredded_key_is_gone_from_the_database_files(api):
    pid = team(api)
    with api.app.app_context():
        wrapped = db.session.execute(text("SELECT wrapped_key FROM patients WHERE id = :p"), {"p": pid}).scalar()
        token = db.session.execute(
            text("SELECT min(token) FROM patient_search_tokens WHERE patient_id = :p"), {"p": pid}
        ).scalar()
        db.session.commit()
    assert wrapped and bytes(wrapped) in _stored(_files(api))  # the test can see a key where it is
    assert token.encode() in _stored(_files(api, "patient_search_tokens"))
    assert api.call("admin", "DELETE", f"/api/v1/patients/{pid}").status_code == 204
    assert bytes(wrapped) not in _stored(_files(api))
    assert token.encode() not in _stored(_files(api, "patient_search_tokens"))  # the name index goes too
