//! Backend decorators that time every call: [`timed_backend`] and [`timed_cache`] wrap a worker's
//! storage + permission backend and its cache so that each method runs inside the
//! `storage.<method>`, `permission.<method>` or `cache.<method>` timer, and cache reads count as
//! hits or misses. With metrics disabled the backends are returned as they are (no indirection).
//!
//! Method names are Kinto 26's (the trait's). The fused reads of a transaction are timed under the
//! Kinto call they replace: `read_object` as `storage.get`, `read_list` as `storage.list_all`.
//! `check_permission` is also the authorization decision timed as cliquet's `authentication.permits`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::{Backend as Role, Metrics};
use crate::cache::Cache;
use crate::permission::{ObjectPermissions, Permission};
use crate::storage::{
    Backend, Filter, ListQuery, ListRef, ListRequest, ListResult, Object, ReadRequest, ReadResult,
    Result, Storage, Transaction,
};

/// `backend`, timed by `metrics` (unchanged when metrics are disabled).
pub fn timed_backend(backend: Arc<dyn Backend>, metrics: &Metrics) -> Arc<dyn Backend> {
    if !metrics.is_enabled() {
        return backend;
    }
    Arc::new(TimedBackend {
        inner: backend,
        metrics: metrics.clone(),
    })
}

/// `cache`, timed by `metrics` (unchanged when metrics are disabled).
pub fn timed_cache(cache: Arc<dyn Cache>, metrics: &Metrics) -> Arc<dyn Cache> {
    if !metrics.is_enabled() {
        return cache;
    }
    Arc::new(TimedCache {
        inner: cache,
        metrics: metrics.clone(),
    })
}

/// A storage + permission backend whose transactions are [`TimedTransaction`]s.
pub struct TimedBackend {
    inner: Arc<dyn Backend>,
    metrics: Metrics,
}

impl Backend for TimedBackend {
    fn begin(&self) -> Result<Box<dyn Transaction + '_>> {
        let inner = self.inner.begin()?;
        Ok(Box::new(TimedTransaction {
            inner,
            metrics: &self.metrics,
        }))
    }

    fn ping(&self) -> bool {
        self.metrics
            .time_backend(Role::Storage, "ping", || self.inner.ping())
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        self.inner.migrate(dry_run)
    }

    fn flush(&self) -> Result<()> {
        self.metrics
            .time_backend(Role::Storage, "flush", || self.inner.flush())
    }
}

/// One transaction whose storage and permission calls are timed.
pub struct TimedTransaction<'a> {
    inner: Box<dyn Transaction + 'a>,
    metrics: &'a Metrics,
}

impl TimedTransaction<'_> {
    #[inline]
    fn storage<T>(&mut self, method: &str, f: impl FnOnce(&mut dyn Transaction) -> T) -> T {
        let inner = &mut *self.inner;
        self.metrics
            .time_backend(Role::Storage, method, || f(inner))
    }

    #[inline]
    fn permission<T>(&mut self, method: &str, f: impl FnOnce(&mut dyn Transaction) -> T) -> T {
        let inner = &mut *self.inner;
        self.metrics
            .time_backend(Role::Permission, method, || f(inner))
    }
}

impl Storage for TimedTransaction<'_> {
    fn resource_timestamp(&mut self, list: ListRef) -> Result<i64> {
        self.storage("resource_timestamp", |t| t.resource_timestamp(list))
    }

    fn all_resources_timestamps(&mut self, resource_name: &str) -> Result<Vec<(String, i64)>> {
        self.storage("all_resources_timestamps", |t| {
            t.all_resources_timestamps(resource_name)
        })
    }

    fn create(
        &mut self,
        list: ListRef,
        obj: Object,
    ) -> Result<std::result::Result<Object, Object>> {
        self.storage("create", |t| t.create(list, obj))
    }

    fn get(&mut self, list: ListRef, id: &str) -> Result<Option<Object>> {
        self.storage("get", |t| t.get(list, id))
    }

    fn update(&mut self, list: ListRef, id: &str, obj: Object) -> Result<Object> {
        self.storage("update", |t| t.update(list, id, obj))
    }

    fn update_if(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        read: Option<i64>,
    ) -> Result<Option<Object>> {
        // Kinto's metric name: the same write.
        self.storage("update", |t| t.update_if(list, id, obj, read))
    }

    fn delete(
        &mut self,
        list: ListRef,
        id: &str,
        with_deleted: bool,
        last_modified: Option<i64>,
    ) -> Result<Option<Object>> {
        self.storage("delete", |t| {
            t.delete(list, id, with_deleted, last_modified)
        })
    }

    fn delete_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
        with_deleted: bool,
    ) -> Result<Vec<Object>> {
        self.storage("delete_all", |t| {
            t.delete_all(resource_name, parent_id, query, with_deleted)
        })
    }

    fn purge_deleted(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        before: Option<i64>,
    ) -> Result<usize> {
        self.storage("purge_deleted", |t| {
            t.purge_deleted(resource_name, parent_id, before)
        })
    }

    fn purge_deleted_retaining(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        max_retained: usize,
    ) -> Result<usize> {
        self.storage("purge_deleted", |t| {
            t.purge_deleted_retaining(resource_name, parent_id, max_retained)
        })
    }

    fn list_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
    ) -> Result<Vec<Object>> {
        self.storage("list_all", |t| t.list_all(resource_name, parent_id, query))
    }

    fn count_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        filters: &[Filter],
    ) -> Result<usize> {
        self.storage("count_all", |t| {
            t.count_all(resource_name, parent_id, filters)
        })
    }
}

impl Permission for TimedTransaction<'_> {
    fn add_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.permission("add_user_principal", |t| {
            t.add_user_principal(user_id, principal)
        })
    }

    fn remove_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
        self.permission("remove_user_principal", |t| {
            t.remove_user_principal(user_id, principal)
        })
    }

    fn remove_principal(&mut self, principal: &str) -> Result<()> {
        self.permission("remove_principal", |t| t.remove_principal(principal))
    }

    fn get_user_principals(&mut self, user_id: &str) -> Result<BTreeSet<String>> {
        self.permission("get_user_principals", |t| t.get_user_principals(user_id))
    }

    fn add_principal_to_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.permission("add_principal_to_ace", |t| {
            t.add_principal_to_ace(object_id, permission, principal)
        })
    }

    fn remove_principal_from_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()> {
        self.permission("remove_principal_from_ace", |t| {
            t.remove_principal_from_ace(object_id, permission, principal)
        })
    }

    fn get_object_permission_principals(
        &mut self,
        object_id: &str,
        permission: &str,
    ) -> Result<BTreeSet<String>> {
        self.permission("get_object_permission_principals", |t| {
            t.get_object_permission_principals(object_id, permission)
        })
    }

    fn get_objects_permissions(&mut self, object_ids: &[String]) -> Result<Vec<ObjectPermissions>> {
        self.permission("get_objects_permissions", |t| {
            t.get_objects_permissions(object_ids)
        })
    }

    fn replace_object_permissions(
        &mut self,
        object_id: &str,
        permissions: &ObjectPermissions,
    ) -> Result<()> {
        self.permission("replace_object_permissions", |t| {
            t.replace_object_permissions(object_id, permissions)
        })
    }

    fn delete_object_permissions(&mut self, patterns: &[String]) -> Result<()> {
        self.permission("delete_object_permissions", |t| {
            t.delete_object_permissions(patterns)
        })
    }

    fn get_accessible_objects(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        self.permission("get_accessible_objects", |t| {
            t.get_accessible_objects(principals, bound_permissions)
        })
    }

    fn get_authorized_principals(
        &mut self,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeSet<String>> {
        self.permission("get_authorized_principals", |t| {
            t.get_authorized_principals(bound_permissions)
        })
    }

    fn check_permission(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<bool> {
        // The allow-or-reject decision of a request: also cliquet's `authentication.permits`.
        let metrics = self.metrics;
        metrics.time_permits(|| {
            self.permission("check_permission", |t| {
                t.check_permission(principals, bound_permissions)
            })
        })
    }
}

impl Transaction for TimedTransaction<'_> {
    fn commit(self: Box<Self>) -> Result<()> {
        let TimedTransaction { inner, metrics } = *self;
        metrics.time_backend(Role::Storage, "commit", || inner.commit())
    }

    fn rollback(self: Box<Self>) -> Result<()> {
        let TimedTransaction { inner, metrics } = *self;
        metrics.time_backend(Role::Storage, "rollback", || inner.rollback())
    }

    fn commit_with_next_write(&mut self) {
        self.inner.commit_with_next_write()
    }

    // Delegated, or object writes would read without the list's lock (lost updates).
    fn lock_list(&mut self, list: ListRef) -> Result<()> {
        self.inner.lock_list(list)
    }

    // Delegated whole, so that a backend answering in one round trip (PostgreSQL) still does.
    fn read_object(&mut self, req: &ReadRequest) -> Result<ReadResult> {
        self.storage("get", |t| t.read_object(req))
    }

    fn read_list(&mut self, req: &ListRequest) -> Result<ListResult> {
        self.storage("list_all", |t| t.read_list(req))
    }
}

/// A cache whose calls are timed and whose reads count as hits or misses.
pub struct TimedCache {
    inner: Arc<dyn Cache>,
    metrics: Metrics,
}

impl Cache for TimedCache {
    fn get(&self, key: &str) -> Result<Option<Value>> {
        let found = self
            .metrics
            .time_backend(Role::Cache, "get", || self.inner.get(key));
        if let Ok(value) = &found {
            self.metrics.cache_lookup(value.is_some());
        }
        found
    }

    fn set(&self, key: &str, value: &Value, ttl_seconds: Option<f64>) -> Result<()> {
        self.metrics.time_backend(Role::Cache, "set", || {
            self.inner.set(key, value, ttl_seconds)
        })
    }

    fn delete(&self, key: &str) -> Result<Option<Value>> {
        self.metrics
            .time_backend(Role::Cache, "delete", || self.inner.delete(key))
    }

    fn expire(&self, key: &str, ttl_seconds: f64) -> Result<()> {
        self.metrics.time_backend(Role::Cache, "expire", || {
            self.inner.expire(key, ttl_seconds)
        })
    }

    fn ttl(&self, key: &str) -> Result<i64> {
        self.metrics
            .time_backend(Role::Cache, "ttl", || self.inner.ttl(key))
    }

    fn flush(&self) -> Result<()> {
        self.metrics
            .time_backend(Role::Cache, "flush", || self.inner.flush())
    }

    fn ping(&self) -> bool {
        self.metrics
            .time_backend(Role::Cache, "ping", || self.inner.ping())
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        self.inner.migrate(dry_run)
    }
}
