use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new("x", &[], "x", "x")
}
