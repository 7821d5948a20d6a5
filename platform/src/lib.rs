//! Everything in Tessera that does I/O: configuration, the record store (SQL through sea-query
//! over sea-orm), DDL from metadata, authentication, the metadata service that applies runtime
//! changes and swaps the schema snapshot, the generated GraphQL APIs, and the axum HTTP server.

pub mod access;
pub mod auth;
pub mod crypto;
pub mod graphql;
pub mod http;
pub mod metadata_service;
pub mod server;
pub mod store;
