//! The integration tests: one binary (`cargo test --test it`, or `cargo test --test it
//! flood` for one module) over real loopback sockets, the in-process server and the
//! daemon binary. One module per concern; the helpers live once in [`util`].
//!
//! All modules share one process, so a test must not touch process-wide state (the
//! environment, rlimits, the working directory, signal handlers): tests read
//! `SWITCHBOARD_TEST_BACKEND` and friends but never set them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod assist_eval;
mod assist_service;
mod auth_token_cli;
mod backpressure;
mod bench_scripts;
mod cli;
mod console_login;
mod examples_talk;
mod flood;
mod frame_props;
mod frame_vectors;
mod framing;
mod framing_errors;
mod handshake_auth;
mod handshake_ping;
mod journal_crash;
mod journal_damage;
mod journal_maxima;
mod journal_props;
mod journal_restart;
mod journal_resume;
mod json_vectors;
mod mail;
mod mail_tls;
mod message_props;
mod ops_admin;
mod ops_files;
mod ops_limits;
mod ops_logging;
mod ops_notify;
mod ops_reload;
mod protocol_vectors;
mod proxy_haproxy;
mod proxy_protocol;
mod pyjwt_interop;
mod sdk_client;
mod service_authz;
mod service_capacity;
mod service_lifecycle;
mod service_notice;
mod service_presence;
mod session_expiry;
mod shutdown;
mod slab_reuse;
mod slow_readers;
mod storm_chat;
mod storm_smoke;
mod storm_tls;
mod storm_web;
mod supervisors;
mod timeouts;
mod tls;
mod uring_files;
mod web_api;
mod web_files;
mod web_http;
mod web_json;
mod web_profile;
mod web_socket;
mod web_visitors;
mod webhooks;
