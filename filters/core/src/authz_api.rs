//! The AuthorizationPolicy engine as this module uses it (kept in one place so the routing code
//! does not depend on the authz module's internal layout).

pub(crate) use crate::authz::{AuthzDecision, CompiledAuthz, InvalidAuthz};
