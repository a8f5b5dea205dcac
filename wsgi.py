"""Entry point: `python wsgi.py` serves HTTP and Socket.IO; `flask --app wsgi ...`
runs the commands; gunicorn serves `wsgi:app` (see platform/gunicorn.conf.py)."""

import logging
import re

from realtime import socketio
from renkei import demo
from renkei.app import create_app, start_background
from renkei.settings import Settings

settings = Settings.from_env()
app = create_app(settings)


class _WithoutQueryStrings(logging.Filter):
    """The built-in server's request lines without their query strings: a patient's name
    typed into a URL (refused with 422) must not land in a log (issue 29). gunicorn's
    access log format (platform/gunicorn.conf.py) leaves them out already."""

    def filter(self, record):
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], str):
            record.args = (re.sub(r"\?\S*", "", record.args[0]),) + record.args[1:]
        return True


if __name__ == "__main__":
    logging.getLogger("werkzeug").addFilter(_WithoutQueryStrings())
    if settings.embedded:
        with app.app_context():
            demo.prepare_embedded(app.extensions["renkei.engine"])
    print(
        f" * Renkei on http://{settings.host}:{settings.port}\n"
        " * This is the built-in single-process server for trying Renkei on this machine; the\n"
        "   Werkzeug warning below is about that. Production runs under gunicorn: platform/DEPLOY.md.",
        flush=True,
    )
    start_background(app)
    socketio.run(
        app, host=settings.host, port=settings.port, allow_unsafe_werkzeug=True, use_reloader=False, log_output=False
    )
