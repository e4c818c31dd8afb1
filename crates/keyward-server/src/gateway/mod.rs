//! Gateway mode (SPEC §6): keyward as a reverse proxy in front of the platform's API, and the
//! forward-auth door (`GET /v1/authorize`) for a proxy the platform already runs. Both ask the
//! same verifier as `/v1/verify`, through the route table of the config file.

pub mod authorize;
pub mod proxy;
pub mod routes;
