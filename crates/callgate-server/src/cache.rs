//! Read-through caches for what every trigger needs (API keys, trigger owners, agents with
//! their prepared versions, users, organisations, configurations), so the hot path reads no
//! database row. Entries expire after a short TTL so edits made by other nodes show up;
//! edits made through this node invalidate at once.

use callgate_domain::definition::{Definition, TriggerNode};
use callgate_domain::variables::VariableDecl;
use callgate_store::*;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Bound on negative entries (unknown keys, unknown paths) so a flood of garbage cannot grow
/// memory without limit.
const MAX_ENTRIES: usize = 100_000;

/// Entries expire `ttl` after they were put. Maps keyed by ids or digests hash with foldhash;
/// a map keyed by text the caller chose (a trigger path, a UUID in a URL) names SipHash
/// (`RandomState`) instead, whose keyed hashing no flood of crafted keys can collide.
struct TtlMap<K, V, S = foldhash::fast::RandomState> {
    ttl: Duration,
    map: RwLock<HashMap<K, (Instant, V), S>>,
}

impl<K: Eq + Hash + Clone, V: Clone, S: BuildHasher + Default> TtlMap<K, V, S> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: RwLock::new(HashMap::default()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.read().ok()?;
        let (at, v) = map.get(k)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    fn put(&self, k: K, v: V) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(k, (Instant::now(), v));
        }
    }

    fn remove(&self, k: &K) {
        if let Ok(mut map) = self.map.write() {
            map.remove(k);
        }
    }

    fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

/// A version with its definition parsed once.
#[derive(Debug, Clone)]
pub struct PreparedVersion {
    pub version: AgentVersion,
    pub definition: Definition,
    pub triggers: Vec<TriggerNode>,
    pub declarations: Vec<VariableDecl>,
    /// The start node's greeting template, if any.
    pub greeting: Option<String>,
    /// The fallback-less tag names of all prompts (`template::bare_tag_names`): what a trigger
    /// checks against its context to report unresolved variables.
    pub prompt_tags: Vec<String>,
}

impl PreparedVersion {
    pub fn new(version: AgentVersion) -> Self {
        let definition = Definition::from_stored(version.definition.clone());
        let triggers = definition.triggers();
        let declarations = definition.variables();
        let greeting = definition.greeting().map(str::to_owned);
        let mut prompt_tags = Vec::new();
        for prompt in definition.prompt_texts() {
            callgate_domain::template::bare_tag_names(prompt, &mut prompt_tags);
        }
        Self {
            version,
            definition,
            triggers,
            declarations,
            greeting,
            prompt_tags,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CachedAgent {
    pub agent: Agent,
    pub published: Option<Arc<PreparedVersion>>,
    pub draft: Option<Arc<PreparedVersion>>,
}

impl CachedAgent {
    pub fn new(b: AgentBundle) -> Self {
        Self {
            agent: b.agent,
            published: b.published.map(|v| Arc::new(PreparedVersion::new(v))),
            draft: b.draft.map(|v| Arc::new(PreparedVersion::new(v))),
        }
    }

    /// The version a route executes: production → published; test → draft else published.
    pub fn executed(&self, env: Environment) -> Option<&Arc<PreparedVersion>> {
        match env {
            Environment::Production => self.published.as_ref(),
            Environment::Test => self.draft.as_ref().or(self.published.as_ref()),
        }
    }
}

pub struct Catalog {
    store: Arc<dyn Store>,
    keys: TtlMap<[u8; 32], Option<Arc<ApiKey>>>,
    triggers: TtlMap<String, Option<TriggerOwner>, RandomState>,
    agents: TtlMap<AgentId, Arc<CachedAgent>>,
    agent_uuids: TtlMap<Uuid, Option<(OrgId, AgentId)>, RandomState>,
    users: TtlMap<UserId, Arc<User>>,
    orgs: TtlMap<OrgId, Arc<Organization>>,
    configs: TtlMap<OrgId, Arc<Vec<ConfigWithNumbers>>>,
    config_by_id: TtlMap<ConfigId, Arc<TelephonyConfig>>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            keys: TtlMap::new(ttl),
            triggers: TtlMap::new(ttl),
            agents: TtlMap::new(ttl),
            agent_uuids: TtlMap::new(ttl),
            users: TtlMap::new(ttl),
            orgs: TtlMap::new(ttl),
            configs: TtlMap::new(ttl),
            config_by_id: TtlMap::new(ttl),
        }
    }

    pub async fn api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<Arc<ApiKey>>> {
        if let Some(k) = self.keys.get(hash) {
            return Ok(k);
        }
        let k = self.store.find_api_key(hash).await?.map(Arc::new);
        self.keys.put(*hash, k.clone());
        Ok(k)
    }

    pub async fn trigger(&self, path: &str) -> StoreResult<Option<TriggerOwner>> {
        if let Some(t) = self.triggers.get(&path.to_owned()) {
            return Ok(t);
        }
        let t = self.store.find_trigger(path).await?;
        self.triggers.put(path.to_owned(), t.clone());
        Ok(t)
    }

    pub async fn agent(&self, org: OrgId, id: AgentId) -> StoreResult<Arc<CachedAgent>> {
        if let Some(a) = self.agents.get(&id) {
            if a.agent.org_id == org {
                return Ok(a);
            }
            return Err(StoreError::NotFound);
        }
        let a = Arc::new(CachedAgent::new(self.store.get_agent(org, id).await?));
        self.agents.put(id, a.clone());
        Ok(a)
    }

    /// By UUID in any organisation; `None` when unknown.
    pub async fn agent_by_uuid(&self, uuid: Uuid) -> StoreResult<Option<Arc<CachedAgent>>> {
        if let Some(ids) = self.agent_uuids.get(&uuid) {
            return match ids {
                Some((org, id)) => self.agent(org, id).await.map(Some),
                None => Ok(None),
            };
        }
        let found = self.store.find_agent_by_uuid(uuid).await?;
        match found {
            Some(b) => {
                let a = Arc::new(CachedAgent::new(b));
                self.agent_uuids
                    .put(uuid, Some((a.agent.org_id, a.agent.id)));
                self.agents.put(a.agent.id, a.clone());
                Ok(Some(a))
            }
            None => {
                self.agent_uuids.put(uuid, None);
                Ok(None)
            }
        }
    }

    pub async fn user(&self, org: OrgId, id: UserId) -> StoreResult<Arc<User>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(u);
        }
        let u = Arc::new(self.store.get_user(org, id).await?);
        self.users.put(id, u.clone());
        Ok(u)
    }

    pub async fn org(&self, id: OrgId) -> StoreResult<Arc<Organization>> {
        if let Some(o) = self.orgs.get(&id) {
            return Ok(o);
        }
        let o = Arc::new(self.store.get_org(id).await?);
        self.orgs.put(id, o.clone());
        Ok(o)
    }

    pub async fn configs(&self, org: OrgId) -> StoreResult<Arc<Vec<ConfigWithNumbers>>> {
        if let Some(c) = self.configs.get(&org) {
            return Ok(c);
        }
        let c = Arc::new(self.store.list_configs(org).await?);
        self.configs.put(org, c.clone());
        Ok(c)
    }

    pub async fn config_any(&self, id: ConfigId) -> StoreResult<Arc<TelephonyConfig>> {
        if let Some(c) = self.config_by_id.get(&id) {
            return Ok(c);
        }
        let c = Arc::new(self.store.get_config_any(id).await?);
        self.config_by_id.put(id, c.clone());
        Ok(c)
    }

    /// After an edit of the organisation (its quota, limits or capacity policy).
    pub fn invalidate_org(&self, id: OrgId) {
        self.orgs.remove(&id);
    }

    /// A call of the organisation ended, which lowers a quota: the entry needs a re-read,
    /// unless the organisation has no quota (unlimited), when the cached entry still holds.
    pub fn call_ended(&self, id: OrgId) {
        let unlimited = self
            .orgs
            .get(&id)
            .is_some_and(|o| o.quota_seconds_remaining.is_none());
        if !unlimited {
            self.orgs.remove(&id);
        }
    }

    /// After any management write on this node.
    pub fn invalidate_all(&self) {
        self.keys.clear();
        self.triggers.clear();
        self.agents.clear();
        self.agent_uuids.clear();
        self.users.clear();
        self.orgs.clear();
        self.configs.clear();
        self.config_by_id.clear();
    }
}
