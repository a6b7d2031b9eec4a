//! The permission role on a PostgreSQL transaction (Kinto's `user_principals` and
//! `access_control_entries`), each method one statement with array parameters.

use super::{ObjectPermissions, Permission};
use crate::storage::pg_inline;
use crate::storage::postgresql::{group_aces, nul_in_text, Named, PgTx};
use crate::storage::{escape_like, like_range, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// `replace_object_permissions` in one statement: removes the principals no longer named (never
/// one that stays, which the insert of the same statement could not see deleted), inserts the new
/// ones.
static REPLACE_ACES: Named = Named {
    name: "kinto_rs_replace_aces",
    types: "(text, text[], text[], text[])",
    sql: LazyLock::new(|| {
        "WITH removed AS (DELETE FROM access_control_entries \
           WHERE object_id = $1 AND permission = ANY($2::text[]) \
           AND (permission, principal) NOT IN (SELECT * FROM unnest($3::text[], $4::text[]))) \
         INSERT INTO access_control_entries (object_id, permission, principal) \
         SELECT $1, perm, principal FROM unnest($3::text[], $4::text[]) AS n(perm, principal) \
         ON CONFLICT (object_id, permission, principal) DO NOTHING"
            .to_string()
    }),
};

fn unzip(pairs: &[(String, String)]) -> (Vec<&str>, Vec<&str>) {
    pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip()
}

fn strings(rows: Vec<postgres::Row>) -> BTreeSet<String> {
    rows.iter().map(|r| r.get(0)).collect()
}

impl Permission for PgTx {
    fn add_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.write(None)?.execute(
            "INSERT INTO user_principals (user_id, principal) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&user_id, &principal],
        )?;
        Ok(())
    }

    fn remove_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.write(None)?.execute(
            "DELETE FROM user_principals WHERE user_id = $1 AND principal = $2",
            &[&user_id, &principal],
        )?;
        Ok(())
    }

    fn remove_principal(&mut self, principal: &str) -> Result<()> {
        self.write(None)?.execute(
            "DELETE FROM user_principals WHERE principal = $1",
            &[&principal],
        )?;
        Ok(())
    }

    fn get_user_principals(&mut self, user_id: &str) -> Result<BTreeSet<String>> {
        let rows = self.conn()?.query(
            "SELECT principal FROM user_principals \
             WHERE user_id = $1 OR user_id = 'system.Authenticated'",
            &[&user_id],
        )?;
        Ok(strings(rows))
    }

    fn add_principal_to_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.write(None)?.execute(
            "INSERT INTO access_control_entries (object_id, permission, principal) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&object_id, &permission, &principal],
        )?;
        Ok(())
    }

    fn remove_principal_from_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.write(None)?.execute(
            "DELETE FROM access_control_entries \
             WHERE object_id = $1 AND permission = $2 AND principal = $3",
            &[&object_id, &permission, &principal],
        )?;
        Ok(())
    }

    fn get_object_permission_principals(
        &mut self,
        object_id: &str,
        permission: &str,
    ) -> Result<BTreeSet<String>> {
        let rows = self.conn()?.query(
            "SELECT principal FROM access_control_entries \
             WHERE object_id = $1 AND permission = $2",
            &[&object_id, &permission],
        )?;
        Ok(strings(rows))
    }

    fn get_objects_permissions(&mut self, object_ids: &[String]) -> Result<Vec<ObjectPermissions>> {
        if object_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query(
            "SELECT object_id, permission, principal FROM access_control_entries \
             WHERE object_id = ANY($1::text[])",
            &[&object_ids],
        )?;
        let grouped = group_aces(&rows);
        Ok(object_ids
            .iter()
            .map(|id| grouped.get(id).cloned().unwrap_or_default())
            .collect())
    }

    fn replace_object_permissions(
        &mut self,
        object_id: &str,
        permissions: &ObjectPermissions,
    ) -> Result<()> {
        if permissions.is_empty() {
            return Ok(());
        }
        let names = permissions.keys().map(String::as_str);
        let (perms, principals): (Vec<&str>, Vec<&str>) = permissions
            .iter()
            .flat_map(|(perm, ps)| ps.iter().map(move |p| (perm.as_str(), p.as_str())))
            .unzip();
        let params = [
            pg_inline::text(object_id),
            pg_inline::text_array(names),
            pg_inline::text_array(perms),
            pg_inline::text_array(principals),
        ];
        let params: Option<Vec<String>> = params.into_iter().collect();
        // Nothing reads this statement's answer: it goes with the next one.
        self.defer(&REPLACE_ACES, &params.ok_or_else(nul_in_text)?)
    }

    fn delete_object_permissions(&mut self, patterns: &[String]) -> Result<()> {
        if patterns.is_empty() {
            return Ok(());
        }
        let exact: Vec<&str> = patterns
            .iter()
            .filter(|p| !p.contains('*'))
            .map(String::as_str)
            .collect();
        let conn = self.write(None)?;
        if !exact.is_empty() {
            conn.execute(
                "DELETE FROM access_control_entries WHERE object_id = ANY($1::text[])",
                &[&exact],
            )?;
        }
        for pattern in patterns.iter().filter(|p| p.contains('*')) {
            // The range lets the object_id index serve the (generic-plan) LIKE.
            let (lo, hi) = like_range(pattern);
            conn.execute(
                "DELETE FROM access_control_entries \
                 WHERE object_id >= $1 AND object_id < $2 AND object_id LIKE $3",
                &[&lo, &hi, &escape_like(pattern)],
            )?;
        }
        Ok(())
    }

    fn get_accessible_objects(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        if principals.is_empty() || bound_permissions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let principals: Vec<&String> = principals.iter().collect();
        let patterns: Vec<String> = bound_permissions
            .iter()
            .map(|(o, _)| escape_like(o))
            .collect();
        let perms: Vec<&str> = bound_permissions.iter().map(|(_, p)| p.as_str()).collect();
        let rows = self.conn()?.query(
            "SELECT DISTINCT a.object_id, a.permission FROM access_control_entries AS a \
             JOIN unnest($2::text[], $3::text[]) AS b(pattern, perm) \
               ON a.permission = b.perm AND a.object_id LIKE b.pattern \
             WHERE a.principal = ANY($1::text[])",
            &[&principals, &patterns, &perms],
        )?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().insert(r.get(1));
        }
        Ok(out)
    }

    fn get_authorized_principals(
        &mut self,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeSet<String>> {
        if bound_permissions.is_empty() {
            return Ok(BTreeSet::new());
        }
        let (objects, perms) = unzip(bound_permissions);
        let rows = self.conn()?.query(
            "SELECT DISTINCT a.principal FROM access_control_entries AS a \
             JOIN unnest($1::text[], $2::text[]) AS b(o, perm) \
               ON a.object_id = b.o AND a.permission = b.perm",
            &[&objects, &perms],
        )?;
        Ok(strings(rows))
    }

    fn check_permission(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<bool> {
        if principals.is_empty() || bound_permissions.is_empty() {
            return Ok(false);
        }
        let principals: Vec<&String> = principals.iter().collect();
        let (objects, perms) = unzip(bound_permissions);
        let row = self.conn()?.query_one(
            "SELECT EXISTS (SELECT 1 FROM access_control_entries AS a \
             JOIN unnest($2::text[], $3::text[]) AS b(o, perm) \
               ON a.object_id = b.o AND a.permission = b.perm \
             WHERE a.principal = ANY($1::text[]))",
            &[&principals, &objects, &perms],
        )?;
        Ok(row.get(0))
    }
}
