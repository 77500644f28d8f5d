//! User and group names for tar headers, looked up once per id and cached (a tree usually has one or
//! two owners, and the lookup may read /etc/passwd or ask a directory service).

use std::collections::HashMap;

/// Cache of uid/gid → name. `None` = the id has no name on this system.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Owners {
    pub fn user(&mut self, uid: u32) -> Option<&str> {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .as_deref()
    }

    pub fn group(&mut self, gid: u32) -> Option<&str> {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup_group(gid))
            .as_deref()
    }
}

// `uzers` wraps getpwuid_r/getgrgid_r (re-entrant, buffer grown as needed). A name that is not
// UTF-8 is left out, as a name that does not fit the header field is: the numeric id remains.
fn lookup_user(uid: u32) -> Option<String> {
    uzers::get_user_by_uid(uid).and_then(|u| u.name().to_str().map(str::to_owned))
}

fn lookup_group(gid: u32) -> Option<String> {
    uzers::get_group_by_gid(gid).and_then(|g| g.name().to_str().map(str::to_owned))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name() {
        let mut o = Owners::default();
        assert_eq!(o.user(0), Some("root"));
        assert!(o.group(0).is_some());
        assert_eq!(o.user(4_000_000_000), None);
    }
}
