"""The example app (examples/gunicorn-app) with the GET /health route that
a gunicorn user without modelarts-init writes for the balancer's check: 200
{"health": "true"} as long as a worker runs. bench/rolling.sh serves it in
every mode, so that all of them face the same balancer with the same app:

    gunicorn --chdir examples/gunicorn-app --pythonpath bench rolling_app:app
"""

from app import app
from flask import jsonify


@app.get("/health")
def health():
    return jsonify(health="true")
