//! Integration tests for modelarts-init: one test binary, one module per area.
//! Shared helpers live in `util` (processes, temp dirs, waits, /proc),
//! `http` (a raw HTTP/1.1 client, curl), `payload` (test files and their
//! sha256) and `front_util` (modelarts-init in front of gunicorn or another
//! child); the tests of the HTTP front are the `front_*` modules.

mod util;

mod http;

mod payload;

mod front_util;

mod supervisor;

mod front_health;

mod front_restart;

mod front_proxy;

mod front_upstream;

mod front_http11;

mod front_tls;

mod front_readiness;

mod front_streams;

mod front_limits;

mod front_keepalive;

mod front_drain;

mod front_websocket;

mod front_config;

mod front_status;

mod front_threads;

mod front_metrics;

mod front_admission;

mod front_drain_quiet;

mod packaging;

mod mnist;

mod terminal;

mod chaos;

mod docs;
