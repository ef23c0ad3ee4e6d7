"""`bench listen serve`: the rating web app (Flask, served by waitress).

Every URL starts with a rater's secret token (`/r/TOKEN/...`); without a known token there is nothing
to see. A rater's page shows the first trial they have not answered yet, so closing the tab and coming
back resumes. Answers are validated against that rater's own trials and written in one SQLite
transaction each; the first answer to (rater, clip, question) counts and replays change nothing. Audio
is served only by clip name (32 hex digits) from the study's own `audio/` folder, and only the clips of
the asking rater's trials. Pages are Jinja templates with autoescaping, a strict Content-Security-Policy
(no inline script), no referrer (the token is in the URL) and no caching.
"""
from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

from flask import Flask, Response, abort, g, redirect, render_template_string, request, send_file

from bench.core.errors import BenchError
from bench.listen import store
from bench.listen.protocols import ACR_LABELS, scale
from bench.listen.study import DB_FILE, load_study

CLIP_NAME = re.compile(r"[0-9a-f]{32}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 44rem; line-height: 1.4; }
h1 { font-size: 1.25rem; }
.progress { color: #555; font-size: .9rem; }
blockquote { margin: .5rem 0 1rem; padding: .5rem .75rem; background: #f3f3f3; border-left: 4px solid #888; }
audio { width: 100%; margin: .25rem 0 .75rem; }
fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 0 0 1rem; padding: .5rem .75rem; }
legend { font-weight: 600; padding: 0 .25rem; }
.acr label { display: block; padding: .45rem .25rem; font-size: 1.05rem; }
.acr input { width: 1.2rem; height: 1.2rem; vertical-align: middle; margin-right: .5rem; }
.sample { border-top: 1px solid #ddd; padding-top: .5rem; margin-top: .5rem; }
.slider { display: flex; align-items: center; gap: .75rem; }
.slider input { flex: 1; min-width: 0; height: 2rem; }
.slider output { width: 2.5rem; text-align: right; font-variant-numeric: tabular-nums; }
button { font-size: 1.1rem; padding: .7rem 1.5rem; width: 100%; margin-top: .5rem; }
button[disabled] { opacity: .5; }
.hint { color: #8a4b00; font-size: .9rem; }
"""

JS = """
document.addEventListener("DOMContentLoaded", function () {
  var body = document.body, form = document.getElementById("trial");
  if (!form) return;
  var played = new Set(), audios = Array.prototype.slice.call(document.querySelectorAll("audio[data-clip]"));
  var submit = form.querySelector("button"), hint = document.getElementById("hint");
  function update() {
    var all = audios.every(function (a) { return played.has(a.dataset.clip); });
    submit.disabled = !all; hint.hidden = all;
  }
  audios.forEach(function (a) {
    a.addEventListener("play", function () {
      played.add(a.dataset.clip); update();
      fetch(body.dataset.played, {method: "POST", body: a.dataset.clip, keepalive: true,
                                  headers: {"Content-Type": "text/plain"}});
    });
  });
  document.querySelectorAll(".slider input").forEach(function (s) {
    var out = s.parentNode.querySelector("output");
    s.addEventListener("input", function () { out.value = s.value; });
  });
  update();
});
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ base }}/static/listen.css">
<script src="{{ base }}/static/listen.js"></script>
</head><body data-played="{{ base }}/played">
<h1>{{ title }}</h1>
{% if done %}
<p id="done">Thank you: all {{ total }} pages are answered and saved. You can close this tab.</p>
{% elif error %}
<p class="hint" id="error">{{ error }}</p><p><a href="{{ base }}">Back to the test</a></p>
{% else %}
<p class="progress" id="progress">Page {{ position }} of {{ total }}</p>
{% if caption is not none %}<p>Text description:</p><blockquote id="caption">{{ caption }}</blockquote>{% endif %}
<form id="trial" method="post" action="{{ base }}/answer">
<input type="hidden" name="trial" value="{{ trial.id }}">
{% if kind == "mos" %}
  {% set clip = trial.clips[0] %}
  <audio controls preload="none" data-clip="{{ clip }}" src="{{ base }}/audio/{{ clip }}.wav"></audio>
  {% for q in questions %}
  <fieldset class="acr"><legend>{{ q.text }}</legend>
    {% for label in acr %}
    <label><input type="radio" required name="answer:{{ clip }}:{{ q.id }}" value="{{ loop.index }}"> {{ label }}</label>
    {% endfor %}
  </fieldset>
  {% endfor %}
{% else %}
  <p>{{ questions[0].text }}</p>
  <p><strong>Reference</strong></p>
  <audio controls preload="none" data-clip="{{ trial.reference }}" src="{{ base }}/audio/{{ trial.reference }}.wav"></audio>
  {% for clip in trial.clips %}
  <div class="sample"><strong>Sample {{ letters[loop.index0] }}</strong>
    <audio controls preload="none" data-clip="{{ clip }}" src="{{ base }}/audio/{{ clip }}.wav"></audio>
    <div class="slider"><input type="range" min="0" max="100" step="1" value="50"
      name="answer:{{ clip }}:{{ questions[0].id }}" aria-label="Sample {{ letters[loop.index0] }}"><output>50</output></div>
  </div>
  {% endfor %}
{% endif %}
<p class="hint" id="hint">Play every clip before you go on.</p>
<button type="submit">Next</button>
</form>
{% endif %}
</body></html>
"""


def make_app(study_dir: Path) -> Flask:
    study_dir = Path(study_dir).resolve()
    study = load_study(study_dir)
    db_path = study_dir / DB_FILE
    with store.connect(db_path) as conn:
        if store.study_fingerprint(conn) != study["fingerprint"]:
            raise BenchError(f"{db_path} belongs to another study (fingerprint differs from study.json)")
    protocol = study["protocol"]
    lo, hi = scale(protocol)
    raters = {r["id"]: r for r in study["raters"]}
    captions = {i["id"]: i["caption"] for i in study["items"]}
    audio_dir = study_dir / "audio"
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = store.connect(db_path)
        return g.db

    @app.teardown_appcontext
    def _close(_exc):
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    def rater_of(token: str) -> dict:
        if not TOKEN.fullmatch(token):
            abort(404)
        rater_id = store.rater_for_token(db(), token)
        if rater_id is None or rater_id not in raters:
            abort(404)
        return raters[rater_id]

    def page(token: str, rater: dict, error: str | None = None, status: int = 200):
        answered = store.answered_clips(db(), rater["id"])
        pending = [t for t in rater["trials"] if not _complete(t, answered)]
        trial = pending[0] if pending else None
        caption = None
        if trial is not None and any(q["show_caption"] for q in protocol["questions"]):
            # attention checks show some item's caption too: their noise matches no description
            caption = captions[trial["item"]]
        html = render_template_string(
            PAGE, title="Listening test", base=f"/r/{token}", done=trial is None and error is None,
            error=error, total=len(rater["trials"]),
            position=rater["trials"].index(trial) + 1 if trial else None,
            trial=trial, kind=protocol["kind"], questions=protocol["questions"], acr=ACR_LABELS,
            caption=caption, letters=[chr(65 + k) for k in range(26)])
        return Response(html, status=status, mimetype="text/html")

    def _complete(trial: dict, answered: set) -> bool:
        return all((clip, q["id"]) in answered for clip in trial["clips"] for q in protocol["questions"])

    @app.get("/")
    def index():
        return Response("Listening test server: open the personal link you were given.\n", mimetype="text/plain")

    @app.get("/r/<token>")
    def rater_page(token):
        return page(token, rater_of(token))

    @app.post("/r/<token>/answer")
    def answer(token):
        rater = rater_of(token)
        trial = next((t for t in rater["trials"] if t["id"] == request.form.get("trial")), None)
        if trial is None:
            abort(404)  # not one of this rater's trials
        answers = []
        for clip in trial["clips"]:
            for q in protocol["questions"]:
                raw = request.form.get(f"answer:{clip}:{q['id']}", "")
                if not re.fullmatch(r"\d{1,3}", raw) or not lo <= int(raw) <= hi:
                    return page(token, rater, error=f"Every question needs an answer from {lo} to {hi}.",
                                status=400)
                answers.append((clip, q["id"], int(raw)))
        store.save_answers(db(), rater["id"], trial["id"], answers)
        return redirect(f"/r/{token}", code=303)

    def rater_clips(rater: dict) -> set[str]:
        return {c for t in rater["trials"] for c in t["clips"] + ([t["reference"]] if t.get("reference") else [])}

    @app.get("/r/<token>/audio/<name>.wav")
    def audio(token, name):
        rater = rater_of(token)
        if not CLIP_NAME.fullmatch(name) or name not in rater_clips(rater):
            abort(404)
        return send_file(audio_dir / f"{name}.wav", mimetype="audio/wav", conditional=True, max_age=0)

    @app.post("/r/<token>/played")
    def played(token):
        rater = rater_of(token)
        name = request.get_data(as_text=True).strip()
        if not CLIP_NAME.fullmatch(name) or name not in rater_clips(rater):
            abort(404)
        store.log_play(db(), rater["id"], name)
        return Response(status=204)

    @app.get("/r/<token>/static/listen.css")
    def css(token):
        rater_of(token)
        return Response(CSS, mimetype="text/css")

    @app.get("/r/<token>/static/listen.js")
    def js(token):
        rater_of(token)
        return Response(JS, mimetype="text/javascript")

    return app


def serve(study_dir: Path, host: str = "127.0.0.1", port: int = 8765, threads: int = 4, log=print) -> None:
    """Serve until interrupted (waitress, a production WSGI server)."""
    from waitress import serve as waitress_serve

    app = make_app(study_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: listening on {host}: anyone who can reach this machine on port {port} can try "
              "links. Raters need their secret link; serve over HTTPS (a reverse proxy) on untrusted "
              "networks.", file=sys.stderr)
    shown = "HOST" if host in ("0.0.0.0", "::") else host
    from bench.listen.study import read_links

    for rater_id, path in read_links(study_dir):
        log(f"{rater_id}\thttp://{shown}:{port}{path}")
    log(f"serving {study_dir} on http://{host}:{port} (Ctrl-C stops; answers are saved as they come)")
    waitress_serve(app, host=host, port=port, threads=threads, ident="bench-listen")
