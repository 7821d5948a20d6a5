mod default_role_manager;
mod role_manager;

pub use default_role_manager::DefaultRoleManager;
pub use role_manager::{MatchingFn, RoleManager};
