"""Entry point: `python wsgi.py` serves HTTP and Socket.IO; `flask --app wsgi ...`
runs the commands; gunicorn serves `wsgi:app` (see platform/gunicorn.conf.py)."""
from realtime import socketio
from renkei import demo
from renkei.app import create_app, start_background
from renkei.settings import Settings

settings = Settings.from_env()
app = create_app(settings)

if __name__ == "__main__":
    if settings.embedded:
        with app.app_context():
            demo.prepare_embedded(app.extensions["renkei.engine"])
    print(f" * Renkei on http://{settings.host}:{settings.port}\n"
          " * This is the built-in single-process server for trying Renkei on this machine; the\n"
          "   Werkzeug warning below is about that. Production runs under gunicorn: platform/DEPLOY.md.",
          flush=True)
    start_background(app)
    socketio.run(app, host=settings.host, port=settings.port, allow_unsafe_werkzeug=True,
                 use_reloader=False, log_output=False)
