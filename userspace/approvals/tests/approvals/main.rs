//! Integration tests of dbwarden-approvals: one target, themed modules. Everything runs on
//! loopback and in temp dirs; the control-socket tests need root (CI runs them as root).

mod broker;
mod common;
mod control;
mod http;
mod journal;
mod rules;
mod webhook;
