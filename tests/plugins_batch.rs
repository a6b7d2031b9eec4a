//! Batch with the plugins (7.3 with 7.1, 5.3): the personal bucket created inside a batch,
//! sub-requests of account users, accounts managed through a batch, and a throughput check of
//! the benchmark's shape (batches of 25 record creations).

mod api_support;
use api_support::*;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Instant;

const A: Option<&str> = Some("alice");

fn app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec![
            "kinto.plugins.accounts".into(),
            "kinto.plugins.default_bucket".into(),
            "kinto.plugins.history".into(),
        ];
        s.multiauth_policies = vec!["account".into(), "basicauth".into()];
        s.raw.insert(
            "multiauth.policy.account.use".into(),
            "kinto.plugins.accounts.AccountsPolicy".into(),
        );
        s.raw
            .insert("account_create_principals".into(), "system.Everyone".into());
        s.raw.insert("account_bcrypt_cost".into(), "4".into());
    })
}

fn statuses(r: &Value) -> Vec<u64> {
    r["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect()
}

on_both_backends!(personal_bucket_in_batch, |db| {
    let mut t = app(db);
    let requests: Vec<Value> = (0..5)
        .map(|i| json!({"body": {"data": {"n": i}}}))
        .collect();
    let r = t
        .call(
            "POST",
            "/v1/batch",
            A,
            Some(json!({
                "defaults": {"method": "POST", "path": "/buckets/default/collections/tasks/records"},
                "requests": requests,
            })),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201; 5]);
    let bid = kinto::api::default_bucket::bucket_id("", &t.user_id("alice"));
    // The reported path is the one sent, as the reference reports it.
    let path = r["responses"][0]["path"].as_str().unwrap();
    assert_eq!(path, "/v1/buckets/default/collections/tasks/records");
    assert_eq!(
        r["responses"][0]["body"]["data"]["n"],
        json!(0),
        "the record is in the personal bucket"
    );
    let list = t
        .call(
            "GET",
            "/v1/buckets/default/collections/tasks/records",
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(list["data"].as_array().unwrap().len(), 5);
    // One creation entry each for the bucket and the collection.
    let h = t
        .call(
            "GET",
            &format!("/v1/buckets/{bid}/history?resource_name=collection"),
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(h["data"].as_array().unwrap().len(), 1);
});

on_both_backends!(accounts_in_batch, |db| {
    let mut t = app(db);
    // Sign-ups through a batch, anonymously.
    let r = t
        .call(
            "POST",
            "/v1/batch",
            None,
            Some(json!({
                "defaults": {"method": "PUT"},
                "requests": [
                    {"path": "/accounts/u1", "body": {"data": {"password": "p1"}}},
                    {"path": "/accounts/u2", "body": {"data": {"password": "p2"}}},
                    {"path": "/accounts/u1", "method": "GET"},
                ],
            })),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201, 201, 401]);
    // An account user's batch: authenticated once, every sub-request as that user.
    let token = base64::engine::general_purpose::STANDARD.encode("u1:p1");
    let body = json!({
        "defaults": {"method": "PUT"},
        "requests": [
            {"path": "/buckets/ub"},
            {"path": "/buckets/ub/collections/c"},
            {"path": "/accounts/u1", "method": "GET"},
            {"path": "/accounts/u2", "method": "GET"},
            {"path": "/", "method": "GET"},
        ],
    });
    let r = t
        .request(
            Req::new("POST", "/v1/batch")
                .header("Authorization", &format!("Basic {token}"))
                .json(&body),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201, 201, 200, 403, 200]);
    assert_eq!(
        r["responses"][0]["body"]["permissions"]["write"],
        json!(["account:u1"])
    );
    assert_eq!(r["responses"][4]["body"]["user"]["id"], json!("account:u1"));
    // A sub-request with its own credentials is authenticated with them.
    let other = base64::engine::general_purpose::STANDARD.encode("u2:p2");
    let r = t
        .request(
            Req::new("POST", "/v1/batch")
                .header("Authorization", &format!("Basic {token}"))
                .json(&json!({"requests": [
                    {"path": "/"},
                    {"path": "/", "headers": {"Authorization": format!("Basic {other}")}},
                ]})),
        )
        .expect(200)
        .json();
    assert_eq!(r["responses"][0]["body"]["user"]["id"], json!("account:u1"));
    assert_eq!(r["responses"][1]["body"]["user"]["id"], json!("account:u2"));
});

// The benchmark's shape: batches of 25 record creations. Prints the rate; asserts a floor far
// below the target so that a loaded test machine does not fail it, but a pathological
// per-sub-request cost (a bcrypt check, a transaction each) would.
on_both_backends!(batch_throughput, |db| {
    let history = std::env::var("BATCH_NO_HISTORY").is_err();
    let mut t = app(db).reopen(|s| {
        if !history {
            s.includes.retain(|i| !i.ends_with("history"));
        }
    });
    t.call("PUT", "/v1/buckets/bench", A, None).expect(201);
    t.call("PUT", "/v1/buckets/bench/collections/c", A, None)
        .expect(201);
    let requests: Vec<Value> = (0..25)
        .map(|i| json!({"body": {"data": {"n": i, "title": "some text"}}}))
        .collect();
    let body = json!({
        "defaults": {"method": "POST", "path": "/buckets/bench/collections/c/records"},
        "requests": requests,
    });
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        let r = t
            .call("POST", "/v1/batch", A, Some(body.clone()))
            .expect(200);
        assert_eq!(statuses(&r.json()), vec![201; 25]);
    }
    let elapsed = start.elapsed();
    let rate = rounds as f64 / elapsed.as_secs_f64();
    eprintln!("{db:?}: {rate:.1} batches of 25 creations per second (history: {history})");
    assert!(elapsed.as_secs() < 15, "{rounds} batches took {elapsed:?}");
    let total = t
        .call("HEAD", "/v1/buckets/bench/collections/c/records", A, None)
        .expect(200);
    assert_eq!(total.header("Total-Objects"), Some("500"));
});

/// Counts the backend calls (each about one database round trip) of the requests it serves.
mod counting {
    use kinto::permission::{ObjectPermissions, Permission};
    use kinto::storage::{
        Backend, Filter, ListQuery, ListRef, Object, ReadRequest, ReadResult, Result, Storage,
        Transaction,
    };
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    pub struct Counting {
        pub inner: Box<dyn Backend>,
        pub calls: Arc<AtomicUsize>,
    }

    struct Tx<'a> {
        inner: Box<dyn Transaction + 'a>,
        calls: Arc<AtomicUsize>,
    }

    impl Tx<'_> {
        fn tick(&self) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Backend for Counting {
        fn begin(&self) -> Result<Box<dyn Transaction + '_>> {
            Ok(Box::new(Tx {
                inner: self.inner.begin()?,
                calls: self.calls.clone(),
            }))
        }
        fn ping(&self) -> bool {
            self.inner.ping()
        }
        fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
            self.inner.migrate(dry_run)
        }
        fn flush(&self) -> Result<()> {
            self.inner.flush()
        }
    }

    impl Storage for Tx<'_> {
        fn resource_timestamp(&mut self, list: ListRef) -> Result<i64> {
            self.tick();
            self.inner.resource_timestamp(list)
        }
        fn all_resources_timestamps(&mut self, resource_name: &str) -> Result<Vec<(String, i64)>> {
            self.tick();
            self.inner.all_resources_timestamps(resource_name)
        }
        fn create(
            &mut self,
            list: ListRef,
            obj: Object,
        ) -> Result<std::result::Result<Object, Object>> {
            self.tick();
            self.inner.create(list, obj)
        }
        fn get(&mut self, list: ListRef, id: &str) -> Result<Option<Object>> {
            self.tick();
            self.inner.get(list, id)
        }
        fn update(&mut self, list: ListRef, id: &str, obj: Object) -> Result<Object> {
            self.tick();
            self.inner.update(list, id, obj)
        }
        fn delete(
            &mut self,
            list: ListRef,
            id: &str,
            with_deleted: bool,
            last_modified: Option<i64>,
        ) -> Result<Option<Object>> {
            self.tick();
            self.inner.delete(list, id, with_deleted, last_modified)
        }
        fn delete_all(
            &mut self,
            resource_name: &str,
            parent_id: &str,
            query: &ListQuery,
            with_deleted: bool,
        ) -> Result<Vec<Object>> {
            self.tick();
            self.inner
                .delete_all(resource_name, parent_id, query, with_deleted)
        }
        fn purge_deleted(
            &mut self,
            resource_name: &str,
            parent_id: &str,
            before: Option<i64>,
        ) -> Result<usize> {
            self.tick();
            self.inner.purge_deleted(resource_name, parent_id, before)
        }
        fn purge_deleted_retaining(
            &mut self,
            resource_name: &str,
            parent_id: &str,
            max_retained: usize,
        ) -> Result<usize> {
            self.tick();
            self.inner
                .purge_deleted_retaining(resource_name, parent_id, max_retained)
        }
        fn list_all(
            &mut self,
            resource_name: &str,
            parent_id: &str,
            query: &ListQuery,
        ) -> Result<Vec<Object>> {
            self.tick();
            self.inner.list_all(resource_name, parent_id, query)
        }
        fn count_all(
            &mut self,
            resource_name: &str,
            parent_id: &str,
            filters: &[Filter],
        ) -> Result<usize> {
            self.tick();
            self.inner.count_all(resource_name, parent_id, filters)
        }
        fn count_tombstones(&mut self, resource_name: &str, parent_id: &str) -> Result<usize> {
            self.tick();
            self.inner.count_tombstones(resource_name, parent_id)
        }
        fn update_if(
            &mut self,
            list: ListRef,
            id: &str,
            obj: Object,
            read: Option<i64>,
        ) -> Result<Option<Object>> {
            self.tick();
            self.inner.update_if(list, id, obj, read)
        }
    }

    impl Permission for Tx<'_> {
        fn add_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
            self.tick();
            self.inner.add_user_principal(user_id, principal)
        }
        fn remove_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()> {
            self.tick();
            self.inner.remove_user_principal(user_id, principal)
        }
        fn remove_principal(&mut self, principal: &str) -> Result<()> {
            self.tick();
            self.inner.remove_principal(principal)
        }
        fn get_user_principals(&mut self, user_id: &str) -> Result<BTreeSet<String>> {
            self.tick();
            self.inner.get_user_principals(user_id)
        }
        fn add_principal_to_ace(
            &mut self,
            object_id: &str,
            perm: &str,
            principal: &str,
        ) -> Result<()> {
            self.tick();
            self.inner.add_principal_to_ace(object_id, perm, principal)
        }
        fn remove_principal_from_ace(
            &mut self,
            object_id: &str,
            perm: &str,
            principal: &str,
        ) -> Result<()> {
            self.tick();
            self.inner
                .remove_principal_from_ace(object_id, perm, principal)
        }
        fn get_object_permission_principals(
            &mut self,
            object_id: &str,
            perm: &str,
        ) -> Result<BTreeSet<String>> {
            self.tick();
            self.inner.get_object_permission_principals(object_id, perm)
        }
        fn get_objects_permissions(&mut self, ids: &[String]) -> Result<Vec<ObjectPermissions>> {
            self.tick();
            self.inner.get_objects_permissions(ids)
        }
        fn replace_object_permissions(
            &mut self,
            object_id: &str,
            permissions: &ObjectPermissions,
        ) -> Result<()> {
            self.tick();
            self.inner
                .replace_object_permissions(object_id, permissions)
        }
        fn delete_object_permissions(&mut self, patterns: &[String]) -> Result<()> {
            self.tick();
            self.inner.delete_object_permissions(patterns)
        }
        fn get_accessible_objects(
            &mut self,
            principals: &BTreeSet<String>,
            bound: &[(String, String)],
        ) -> Result<BTreeMap<String, BTreeSet<String>>> {
            self.tick();
            self.inner.get_accessible_objects(principals, bound)
        }
        fn get_authorized_principals(
            &mut self,
            bound: &[(String, String)],
        ) -> Result<BTreeSet<String>> {
            self.tick();
            self.inner.get_authorized_principals(bound)
        }
        fn check_permission(
            &mut self,
            principals: &BTreeSet<String>,
            bound: &[(String, String)],
        ) -> Result<bool> {
            self.tick();
            self.inner.check_permission(principals, bound)
        }
    }

    impl Transaction for Tx<'_> {
        fn commit(self: Box<Self>) -> Result<()> {
            self.tick();
            self.inner.commit()
        }
        fn rollback(self: Box<Self>) -> Result<()> {
            self.tick();
            self.inner.rollback()
        }
        fn read_object(&mut self, req: &ReadRequest) -> Result<ReadResult> {
            self.tick();
            self.inner.read_object(req)
        }
        fn lock_list(&mut self, list: ListRef) -> Result<()> {
            self.inner.lock_list(list)
        }
        fn commit_with_next_write(&mut self) {
            self.inner.commit_with_next_write()
        }
    }
}

// A batch of 25 record creations: one transaction, one principals lookup, and a bounded number
// of backend calls per sub-request (each about one round trip).
on_both_backends!(batch_backend_calls, |db| {
    use std::sync::atomic::Ordering;
    let mut t = app(db).reopen(|s| s.includes.retain(|i| !i.ends_with("history")));
    t.call("PUT", "/v1/buckets/bench", A, None).expect(201);
    t.call("PUT", "/v1/buckets/bench/collections/c", A, None)
        .expect(201);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backend = counting::Counting {
        inner: kinto::storage::connect(&t.settings).unwrap(),
        calls: calls.clone(),
    };
    let cache = kinto::cache::connect(&t.settings).unwrap();
    t.app = kinto::api::App::new(t.settings.clone(), Box::new(backend), cache);
    let requests: Vec<Value> = (0..25)
        .map(|i| json!({"body": {"data": {"n": i}}}))
        .collect();
    let body = json!({
        "defaults": {"method": "POST", "path": "/buckets/bench/collections/c/records"},
        "requests": requests,
    });
    let r = t.call("POST", "/v1/batch", A, Some(body)).expect(200);
    assert_eq!(statuses(&r.json()), vec![201; 25]);
    let n = calls.load(Ordering::SeqCst);
    eprintln!("{db:?}: {n} backend calls for a batch of 25 creations");
    assert!(n <= 25 * 4 + 5, "{n} backend calls");
});
