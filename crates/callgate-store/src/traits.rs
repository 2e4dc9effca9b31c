//! The store traits. Each method is one use case and one transaction; no transaction object
//! crosses the trait, which keeps handlers free of backend details.

use crate::StoreResult;
use crate::records::*;
use async_trait::async_trait;
use jiff::Timestamp;
use uuid::Uuid;

/// Tenants, users and API keys.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// True when no organisation exists yet (first start, SPEC §12).
    async fn is_empty(&self) -> StoreResult<bool>;
    async fn create_org(&self, name: &str, now: Timestamp) -> StoreResult<Organization>;
    async fn list_orgs(&self) -> StoreResult<Vec<Organization>>;
    async fn get_org(&self, id: OrgId) -> StoreResult<Organization>;
    async fn update_org_settings(&self, id: OrgId, s: &OrgSettings) -> StoreResult<Organization>;
    async fn set_quota(&self, id: OrgId, seconds: Option<i64>) -> StoreResult<Organization>;

    /// `Conflict("email_taken")` when the organisation already has that email.
    async fn create_user(
        &self,
        org: OrgId,
        email: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<User>;
    async fn get_user(&self, org: OrgId, id: UserId) -> StoreResult<User>;
    async fn set_user_active(&self, org: OrgId, id: UserId, active: bool) -> StoreResult<User>;

    async fn create_api_key(&self, key: NewApiKey, now: Timestamp) -> StoreResult<ApiKey>;
    /// The key with this SHA-256 hash, active or not.
    async fn find_api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKey>>;
    async fn set_api_key_active(
        &self,
        org: OrgId,
        id: ApiKeyId,
        active: bool,
    ) -> StoreResult<ApiKey>;
    /// Batched `last_used_at` updates, so the trigger path never writes for them.
    async fn touch_api_keys(&self, used: Vec<(ApiKeyId, Timestamp)>) -> StoreResult<()>;
}

/// Agents, their versions and the trigger registry.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Creates the agent with version 1 published and claims its trigger paths;
    /// `Conflict("trigger_path_taken")` if another agent ever used one.
    async fn create_agent(&self, new: NewAgent, now: Timestamp) -> StoreResult<AgentBundle>;
    async fn get_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle>;
    /// By UUID across all organisations (the caller checks the organisation to answer 403).
    async fn find_agent_by_uuid(&self, uuid: Uuid) -> StoreResult<Option<AgentBundle>>;
    async fn list_agents(&self, org: OrgId, status: Option<AgentStatus>)
    -> StoreResult<Vec<Agent>>;
    async fn list_versions(&self, org: OrgId, id: AgentId) -> StoreResult<Vec<AgentVersion>>;
    /// Creates or updates the draft (a new draft starts from the published definition).
    async fn save_draft(
        &self,
        org: OrgId,
        id: AgentId,
        edit: DraftEdit,
        now: Timestamp,
    ) -> StoreResult<AgentBundle>;
    /// Draft → published, previous published → archived. `Conflict("no_draft")` without draft.
    async fn publish(&self, org: OrgId, id: AgentId, now: Timestamp) -> StoreResult<AgentBundle>;
    async fn set_owner(&self, org: OrgId, id: AgentId, user: UserId) -> StoreResult<AgentBundle>;
    async fn archive_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle>;
    async fn find_trigger(&self, path: &str) -> StoreResult<Option<TriggerOwner>>;
}

/// Telephony configurations and caller-ID numbers.
#[async_trait]
pub trait TelephonyStore: Send + Sync {
    /// Making a configuration default clears the previous default in the same transaction.
    async fn create_config(
        &self,
        new: NewTelephonyConfig,
        now: Timestamp,
    ) -> StoreResult<TelephonyConfig>;
    /// Active configurations of the organisation with their numbers, in creation order.
    async fn list_configs(&self, org: OrgId) -> StoreResult<Vec<ConfigWithNumbers>>;
    async fn get_config(&self, org: OrgId, id: ConfigId) -> StoreResult<ConfigWithNumbers>;
    /// By id regardless of organisation or state (the dispatcher's view).
    async fn get_config_any(&self, id: ConfigId) -> StoreResult<TelephonyConfig>;
    async fn update_config(
        &self,
        org: OrgId,
        id: ConfigId,
        update: TelephonyConfigUpdate,
    ) -> StoreResult<TelephonyConfig>;
    /// Soft delete: runs keep pointing at it; it stops being usable.
    async fn delete_config(&self, org: OrgId, id: ConfigId) -> StoreResult<()>;
    async fn set_default_outbound(&self, org: OrgId, id: ConfigId) -> StoreResult<TelephonyConfig>;
    /// `Conflict("phone_number_exists")` for a duplicate address within the configuration.
    async fn add_number(
        &self,
        org: OrgId,
        config: ConfigId,
        fields: PhoneNumberFields,
        now: Timestamp,
    ) -> StoreResult<PhoneNumber>;
    async fn update_number(
        &self,
        org: OrgId,
        config: ConfigId,
        id: NumberId,
        fields: PhoneNumberFields,
    ) -> StoreResult<PhoneNumber>;
    async fn delete_number(&self, org: OrgId, config: ConfigId, id: NumberId) -> StoreResult<()>;
}

/// Runs: the durable queue, the lifecycle and the history.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Reserves the id of a run before it is written, so templates can use
    /// `{{workflow_run_id}}` and the run is inserted in one statement.
    async fn allocate_run_id(&self) -> StoreResult<RunId>;
    /// Writes the run, its first event, the agent's run count and the idempotency record in
    /// one transaction. `Conflict("idempotency_key_reused")` if the key was taken meanwhile.
    async fn enqueue_run(&self, run: NewRun, idem: Option<IdempotencyClaim>) -> StoreResult<Run>;
    /// Like `enqueue_run`, but when the run could be dialled at once (its configuration has no
    /// queued run before it, a pacing slot is free now and both concurrency limits have room)
    /// it is written already claimed: status `dialing`, leased by `claim.node`, with both events
    /// (SPEC §8.2). The caller then dials it without a dispatcher pass. Backends that cannot
    /// decide this inside the insert's transaction leave the run queued, as this default does.
    async fn enqueue_or_claim(
        &self,
        run: NewRun,
        idem: Option<IdempotencyClaim>,
        claim: &DirectClaim,
    ) -> StoreResult<Run> {
        let _ = claim;
        self.enqueue_run(run, idem).await
    }
    async fn find_idempotency(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// Records the exact answer given for an idempotency key, so replays return it.
    async fn save_idempotent_response(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()>;
    async fn get_run(&self, org: OrgId, id: RunId) -> StoreResult<Run>;
    async fn get_run_by_call_id(&self, org: OrgId, call_id: Uuid) -> StoreResult<Run>;
    async fn list_runs(&self, org: OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// Counts of queued and live runs per configuration (dispatcher bookkeeping).
    async fn queue_counts(&self) -> StoreResult<Vec<QueueCount>>;
    /// Moves up to `limit` of the oldest due queued runs of a configuration to `dialing`
    /// (lease and event committed before any provider request is sent, SPEC §8.3).
    async fn claim_runs(
        &self,
        config: ConfigId,
        limit: u32,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ClaimedRun>>;
    /// Claims what the limits allow for one configuration: counts the organisation's and the
    /// configuration's live runs, takes pacing slots from the configuration's persisted pacer
    /// and moves that many of the oldest due queued runs to `dialing`, all in one transaction.
    async fn claim_paced(
        &self,
        config: ConfigId,
        org: OrgId,
        limits: &ClaimLimits,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Claim>;
    /// Hints about configurations that got queued work from other nodes (PostgreSQL
    /// `LISTEN/NOTIFY`); `None` when this process is the only writer and sees all work itself.
    fn work_hints(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<WorkHint>> {
        None
    }
    /// Applies a lifecycle signal; ending a run deducts its billable seconds from the quota.
    async fn apply_update(&self, run: RunId, update: RunUpdate) -> StoreResult<AppliedUpdate>;
    /// Applies several updates in order, in as few transactions as the backend can. Shared
    /// (`Arc`) so a caller can hold on to them for a retry without copying each one.
    async fn apply_updates(
        &self,
        updates: std::sync::Arc<[(RunId, RunUpdate)]>,
    ) -> StoreResult<Vec<StoreResult<AppliedUpdate>>>;
    /// Ends a run of `org` that was never dialled (queued or scheduled) as `canceled`, with its
    /// history entry, atomically with the dispatcher's claims: a run claimed first is
    /// `NotCancelable`, and a canceled run is never claimed. `NotFound` for another
    /// organisation's run.
    async fn cancel_run(&self, org: OrgId, call_id: Uuid, at: Timestamp) -> StoreResult<Cancel>;
    /// Runs that were live when a previous process stopped (dialing, ringing, in progress).
    async fn live_runs(&self) -> StoreResult<Vec<(RunId, String)>>;
    /// Records that `node` is alive (its leases stay its own).
    async fn heartbeat(&self, node: &str, now: Timestamp) -> StoreResult<()>;
    /// When `node` last heartbeat, if ever. A process starting under an id asks twice, a few
    /// heartbeats apart: a value that moved means another running process holds the id.
    async fn node_last_seen(&self, node: &str) -> StoreResult<Option<Timestamp>>;
    /// Live runs leased by nodes not heard from since `stale_before` (a crashed node's calls),
    /// with their status, so a surviving node can settle them (SPEC §8.3).
    async fn orphaned_runs(&self, stale_before: Timestamp) -> StoreResult<Vec<(RunId, String)>>;
    /// Live runs leased by `node`, with their status. A process starting under a node id asks
    /// this before its first heartbeat: what it finds was left by an earlier process with the
    /// same id, which nobody else settles, as the id looks alive again once it heartbeats.
    async fn runs_leased_to(&self, node: &str) -> StoreResult<Vec<(RunId, String)>>;
    /// Deletes idempotency records older than `before`.
    async fn purge_idempotency(&self, before: Timestamp) -> StoreResult<u64>;
}

/// Everything a callgate server needs from its database.
pub trait Store: TenantStore + AgentStore + TelephonyStore + RunStore {}
impl<T: TenantStore + AgentStore + TelephonyStore + RunStore> Store for T {}
