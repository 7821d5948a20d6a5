//! Tera templates, static assets and view models for the admin console and the generated
//! end-user app. Handlers stay in `platform`; the UI arrives with the forms issue.
