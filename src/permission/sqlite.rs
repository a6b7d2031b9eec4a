//! The permission role on a SQLite transaction (tables `user_principals` and
//! `access_control_entries`, as in Kinto's PostgreSQL permission schema).

use super::{ObjectPermissions, Permission};
use crate::storage::sqlite::{sql_err, SqliteTx};
use crate::storage::sqlite_query::glob_pattern;
use crate::storage::Result;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter};
use std::collections::{BTreeMap, BTreeSet};

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqliteTx<'_> {
    fn strings(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| r.get(0))
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(sql_err)
    }

    fn pairs(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }
}

/// `(object_id = ? AND permission = ?) OR ...` over the pairs, with their parameters.
fn pair_conditions(pairs: &[(String, String)], params: &mut Vec<SqlValue>) -> String {
    let mut parts = Vec::with_capacity(pairs.len());
    for (object_id, permission) in pairs {
        parts.push("(object_id = ? AND permission = ?)");
        params.push(SqlValue::Text(object_id.clone()));
        params.push(SqlValue::Text(permission.clone()));
    }
    parts.join(" OR ")
}

fn texts<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<SqlValue> {
    items
        .into_iter()
        .map(|s| SqlValue::Text(s.clone()))
        .collect()
}

impl Permission for SqliteTx<'_> {
    fn add_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.write()?
            .prepare_cached(
                "INSERT INTO user_principals (user_id, principal) VALUES (?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![user_id, principal]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn remove_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.write()?
            .prepare_cached("DELETE FROM user_principals WHERE user_id = ? AND principal = ?")
            .and_then(|mut s| s.execute(params![user_id, principal]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn remove_principal(&mut self, principal: &str) -> Result<()> {
        self.write()?
            .prepare_cached("DELETE FROM user_principals WHERE principal = ?")
            .and_then(|mut s| s.execute(params![principal]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn get_user_principals(&mut self, user_id: &str) -> Result<BTreeSet<String>> {
        let rows = self.strings(
            "SELECT principal FROM user_principals \
             WHERE user_id = ? OR user_id = 'system.Authenticated'",
            &[SqlValue::Text(user_id.to_string())],
        )?;
        Ok(rows.into_iter().collect())
    }

    fn add_principal_to_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.write()?
            .prepare_cached(
                "INSERT INTO access_control_entries (object_id, permission, principal) \
                 VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![object_id, permission, principal]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn remove_principal_from_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.write()?
            .prepare_cached(
                "DELETE FROM access_control_entries \
                 WHERE object_id = ? AND permission = ? AND principal = ?",
            )
            .and_then(|mut s| s.execute(params![object_id, permission, principal]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn get_object_permission_principals(
        &mut self,
        object_id: &str,
        permission: &str,
    ) -> Result<BTreeSet<String>> {
        let rows = self.strings(
            "SELECT principal FROM access_control_entries WHERE object_id = ? AND permission = ?",
            &texts([&object_id.to_string(), &permission.to_string()]),
        )?;
        Ok(rows.into_iter().collect())
    }

    fn get_objects_permissions(&mut self, object_ids: &[String]) -> Result<Vec<ObjectPermissions>> {
        if object_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT object_id, permission, principal FROM access_control_entries \
                 WHERE object_id IN ({})",
                placeholders(object_ids.len())
            ))
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(params_from_iter(object_ids.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_err)?;
        let mut by_object: BTreeMap<String, ObjectPermissions> = BTreeMap::new();
        for row in rows {
            let (object_id, permission, principal) = row.map_err(sql_err)?;
            by_object
                .entry(object_id)
                .or_default()
                .entry(permission)
                .or_default()
                .insert(principal);
        }
        Ok(object_ids
            .iter()
            .map(|id| by_object.get(id).cloned().unwrap_or_default())
            .collect())
    }

    fn replace_object_permissions(
        &mut self,
        object_id: &str,
        permissions: &ObjectPermissions,
    ) -> Result<()> {
        for (permission, principals) in permissions {
            self.write()?
                .prepare_cached(
                    "DELETE FROM access_control_entries WHERE object_id = ? AND permission = ?",
                )
                .and_then(|mut s| s.execute(params![object_id, permission]))
                .map_err(sql_err)?;
            for principal in principals {
                self.add_principal_to_ace(object_id, permission, principal)?;
            }
        }
        Ok(())
    }

    fn delete_object_permissions(&mut self, patterns: &[String]) -> Result<()> {
        for pattern in patterns {
            let conn = self.write()?;
            let result = if pattern.contains('*') {
                conn.prepare_cached("DELETE FROM access_control_entries WHERE object_id GLOB ?")
                    .and_then(|mut s| s.execute([glob_pattern(pattern)]))
            } else {
                conn.prepare_cached("DELETE FROM access_control_entries WHERE object_id = ?")
                    .and_then(|mut s| s.execute([pattern]))
            };
            result.map_err(sql_err)?;
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
        let mut params = texts(principals);
        let mut parts = Vec::new();
        for (pattern, permission) in bound_permissions {
            parts.push("(permission = ? AND object_id GLOB ?)");
            params.push(SqlValue::Text(permission.clone()));
            params.push(SqlValue::Text(glob_pattern(pattern)));
        }
        let sql = format!(
            "SELECT object_id, permission FROM access_control_entries \
             WHERE principal IN ({}) AND ({})",
            placeholders(principals.len()),
            parts.join(" OR ")
        );
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (object_id, permission) in self.pairs(&sql, &params)? {
            out.entry(object_id).or_default().insert(permission);
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
        let mut params = Vec::new();
        let cond = pair_conditions(bound_permissions, &mut params);
        let sql = format!("SELECT DISTINCT principal FROM access_control_entries WHERE {cond}");
        Ok(self.strings(&sql, &params)?.into_iter().collect())
    }

    fn check_permission(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<bool> {
        if principals.is_empty() || bound_permissions.is_empty() {
            return Ok(false);
        }
        let mut params = texts(principals);
        let cond = pair_conditions(bound_permissions, &mut params);
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM access_control_entries WHERE principal IN ({}) AND ({}))",
            placeholders(principals.len()),
            cond
        );
        let found: bool = self
            .conn()
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
            .map_err(sql_err)?;
        Ok(found)
    }
}
