//! Integration tests for modelarts-init: one test binary, one module per area.
//! Shared helpers live in `util`.

mod util;

mod supervisor;

mod front;

mod packaging;

mod mnist;

mod terminal;
