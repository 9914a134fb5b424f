//! The executor: runs the selected stages in dependency order. For each stage it lists the
//! shards, skips those whose commit marker matches (same input identity and config hash),
//! runs the stage's DataFusion plan for the rest — several shards at once — and writes each
//! shard's output as one Parquet file under a staging name, then moves it into place and
//! writes the marker. The stage manifest is written last, after stale files are removed, so
//! a killed run resumes with neither loss nor duplicates.

use crate::config::{PipelineConfig, StageConfig};
use crate::manifest::{
    self, FinishMarker, GlobalMarker, InputEntry, OutputEntry, ShardMarker, StageManifest,
};
use crate::progress::{Progress, StageProgress};
use crate::store::{self, Location, StoreError};
use arrow::array::{ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use harman_stages::{FinishContext, RejectRow, ShardInput, ShardReport, Stage, StageInputs};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Environment variable of the resume test hook: after this many shards are committed, the
/// process exits (status 86) with the next shard staged but not committed, as a kill would.
pub const ABORT_HOOK_ENV: &str = "HARMAN_TEST_ABORT_AFTER_SHARDS";
/// Exit status of the test hook.
pub const ABORT_HOOK_STATUS: i32 = 86;

/// Row groups are cut at this many bytes of encoded data (and at most this many rows).
const ROW_GROUP_BYTES: usize = 128 << 20;
const ROW_GROUP_ROWS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{url}: {source}")]
    ObjectStore {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("stage `{stage}`, shard {url}: {message}")]
    Shard {
        stage: String,
        url: String,
        message: String,
    },
    #[error("stage `{stage}` reads the output of `{upstream}`, but {url} has no manifest; run `{upstream}` first (without --only)")]
    MissingUpstream {
        stage: String,
        upstream: String,
        url: String,
    },
    #[error("stage `{stage}` rejected {fraction:.4} of its records, over max_reject_fraction = {limit}; see {url}/rejects/ and the manifest")]
    RejectsExceeded {
        stage: String,
        fraction: f64,
        limit: f64,
        url: String,
    },
    #[error("{0}")]
    Selection(String),
    #[error("{0}")]
    Manifest(String),
}

fn os_err(url: &str) -> impl FnOnce(object_store::Error) -> ExecError + '_ {
    move |source| ExecError::ObjectStore {
        url: url.to_string(),
        source,
    }
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output URL or path (relative to the current directory), instead of the config's.
    pub output: Option<String>,
    pub only: Option<String>,
    pub from: Option<String>,
    /// Recompute every shard even when its marker matches.
    pub force: bool,
    /// Worker threads (0 or None: the config's, else all cores).
    pub threads: Option<usize>,
}

/// What a stage did.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub manifest: StageManifest,
    pub url: String,
    pub shards_run: usize,
    pub shards_skipped: usize,
    pub seconds: f64,
}

/// Where the run writes.
pub fn output_location(config: &PipelineConfig, opts: &RunOptions) -> Result<Location, StoreError> {
    match &opts.output {
        Some(out) => store::resolve(out, &std::env::current_dir().unwrap_or_default()),
        None => store::resolve(&config.output, &config.base_dir),
    }
}

/// Threads a run uses.
pub fn thread_count(config: &PipelineConfig, opts: &RunOptions) -> usize {
    opts.threads
        .filter(|&t| t > 0)
        .or((config.threads > 0).then_some(config.threads))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run the selected stages.
pub async fn run(
    config: &PipelineConfig,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<Vec<StageOutcome>, ExecError> {
    let root = output_location(config, opts)?;
    let stages = crate::dag::select(config, opts.only.as_deref(), opts.from.as_deref())
        .map_err(ExecError::Selection)?;
    let threads = thread_count(config, opts);
    let abort_after = std::env::var(ABORT_HOOK_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let committed = Arc::new(AtomicUsize::new(0));
    tracing::info!(pipeline = %config.name, output = %root.url, threads, stages = stages.len(), "run starts");
    let mut outcomes = Vec::new();
    for stage in stages {
        let runner = StageRunner {
            config,
            stage,
            dir: root.join(&stage.name),
            root: root.clone(),
            threads,
            force: opts.force,
            abort_after,
            committed: committed.clone(),
        };
        outcomes.push(runner.run(progress).await?);
    }
    Ok(outcomes)
}

/// Read a stage's manifest.
pub async fn read_manifest(dir: &Location) -> Result<Option<StageManifest>, ExecError> {
    let loc = dir.join("_manifest.json");
    let Some(bytes) = get_if_present(&loc).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ExecError::Manifest(format!("{}: not a harman manifest: {e}", loc.url)))
}

/// The bytes of an object, or None when there is none.
async fn get_if_present(loc: &Location) -> Result<Option<bytes::Bytes>, ExecError> {
    match loc.store.get(&loc.path).await {
        Ok(get) => Ok(Some(get.bytes().await.map_err(os_err(&loc.url))?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(os_err(&loc.url)(e)),
    }
}

/// A commit marker (shard or whole-input step), or None when it is missing or unreadable
/// (then the work it would vouch for is redone).
async fn read_marker<T: serde::de::DeserializeOwned>(
    loc: &Location,
) -> Result<Option<T>, ExecError> {
    Ok(get_if_present(loc)
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Whether every file a marker lists is still in `dir`, whole (its recorded size).
async fn outputs_intact(dir: &Location, outputs: &[&OutputEntry]) -> Result<bool, ExecError> {
    for out in outputs {
        let loc = dir.join(&out.path);
        match dir.store.head(&loc.path).await {
            Ok(meta) if meta.size == out.bytes => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(os_err(&loc.url)(e)),
        }
    }
    Ok(true)
}

/// The stage manifests at a location: its own (a stage folder), else those of the stage
/// folders below it (a run folder), with their folders.
pub async fn find_manifests(loc: &Location) -> Result<Vec<(Location, StageManifest)>, ExecError> {
    if let Some(m) = read_manifest(loc).await? {
        return Ok(vec![(loc.clone(), m)]);
    }
    let listed: Vec<object_store::ObjectMeta> = loc
        .store
        .list(Some(&loc.path))
        .try_collect()
        .await
        .map_err(os_err(&loc.url))?;
    let mut found = Vec::new();
    for meta in listed {
        if meta.location.filename() == Some("_manifest.json") {
            let key = meta.location.as_ref().trim_end_matches("/_manifest.json");
            let rel = key
                .strip_prefix(loc.path.as_ref())
                .unwrap_or(key)
                .trim_start_matches('/');
            let dir = loc.join(rel);
            if let Some(m) = read_manifest(&dir).await? {
                found.push((dir, m));
            }
        }
    }
    Ok(found)
}

/// One shard to process, with what identifies its input.
#[derive(Debug, Clone)]
struct ShardSpec {
    input: ShardInput,
    /// The input's URL as the manifest records it: the URL of a source file, or for an
    /// upstream part its path relative to the run (`crawl/part-00000.parquet`), so that a run
    /// folder's manifests do not depend on where the folder is.
    recorded_url: String,
    identity: String,
    etag: Option<String>,
    known_sha256: Option<String>,
}

struct StageRunner<'c> {
    config: &'c PipelineConfig,
    stage: &'c StageConfig,
    root: Location,
    dir: Location,
    threads: usize,
    force: bool,
    abort_after: Option<usize>,
    committed: Arc<AtomicUsize>,
}

impl StageRunner<'_> {
    async fn shards(&self) -> Result<(Vec<ShardSpec>, Vec<(String, String)>), ExecError> {
        match self.stage.stage.inputs() {
            StageInputs::Urls(patterns) => {
                let mut files = Vec::new();
                for p in &patterns {
                    files.extend(store::list_inputs(p, &self.config.base_dir).await?);
                }
                files.sort_by(|a, b| a.url.cmp(&b.url));
                files.dedup_by(|a, b| a.url == b.url);
                let specs = files
                    .into_iter()
                    .enumerate()
                    .map(|(index, f)| {
                        let remote = f.local.is_none();
                        let identity = format!(
                            "size={} etag={} version={} modified={}",
                            f.meta.size,
                            f.meta.e_tag.as_deref().unwrap_or("-"),
                            f.meta.version.as_deref().unwrap_or("-"),
                            f.meta
                                .last_modified
                                .timestamp_nanos_opt()
                                .unwrap_or_default()
                        );
                        ShardSpec {
                            recorded_url: f.url.clone(),
                            input: ShardInput {
                                index,
                                url: f.url,
                                store: f.store,
                                path: f.meta.location,
                                size: f.meta.size,
                                local_path: f.local,
                                origin: None,
                            },
                            identity,
                            etag: f.meta.e_tag.filter(|_| remote),
                            known_sha256: None,
                        }
                    })
                    .collect();
                Ok((specs, Vec::new()))
            }
            StageInputs::Upstream => {
                let mut specs = Vec::new();
                let mut hashes = Vec::new();
                let mut manifests: HashMap<String, Option<StageManifest>> = HashMap::new();
                for up in &self.stage.depends_on {
                    let up_dir = self.root.join(up);
                    let Some(m) = read_manifest(&up_dir).await? else {
                        return Err(ExecError::MissingUpstream {
                            stage: self.stage.name.clone(),
                            upstream: up.clone(),
                            url: up_dir.url.clone(),
                        });
                    };
                    hashes.push((up.clone(), m.config_hash.clone()));
                    // A stage without parts (train) hands on the files of its whole-output
                    // step (the checkpoint, its log) instead.
                    let whole = m.outputs.is_empty();
                    let listed = if whole { &m.reports } else { &m.outputs };
                    for out in listed {
                        let origin = if whole {
                            None
                        } else {
                            self.origin(up, &out.path, &mut manifests).await?
                        };
                        specs.push(ShardSpec {
                            recorded_url: format!("{up}/{}", out.path),
                            input: part_input(&up_dir, specs.len(), out, origin),
                            identity: format!("sha256={}", out.sha256),
                            etag: None,
                            known_sha256: Some(out.sha256.clone()),
                        });
                    }
                }
                Ok((specs, hashes))
            }
        }
    }

    /// The ingest stage the rows of `stage`'s part `part` come from: each part's input is
    /// followed back through the manifests (part i of a stage was made from its input i).
    async fn origin(
        &self,
        stage: &str,
        part: &str,
        manifests: &mut HashMap<String, Option<StageManifest>>,
    ) -> Result<Option<String>, ExecError> {
        let (mut stage, mut part) = (stage.to_string(), part.to_string());
        // A DAG has fewer stages than this; a cycle in hand-edited manifests must not hang.
        for _ in 0..64 {
            if !manifests.contains_key(&stage) {
                let m = read_manifest(&self.root.join(&stage)).await?;
                manifests.insert(stage.clone(), m);
            }
            let Some(Some(m)) = manifests.get(&stage) else {
                return Ok(None);
            };
            if m.kind == "ingest" {
                return Ok(Some(stage));
            }
            let Some(i) = m.outputs.iter().position(|o| o.path == part) else {
                return Ok(None);
            };
            let Some((up, up_part)) = m.inputs.get(i).and_then(|inp| inp.url.split_once('/'))
            else {
                return Ok(None);
            };
            (stage, part) = (up.to_string(), up_part.to_string());
        }
        Ok(None)
    }

    async fn run(&self, progress: &Progress) -> Result<StageOutcome, ExecError> {
        let started = Instant::now();
        let stage = &self.stage.stage;
        let table = stage.output_table();
        let schema_version = harman_schemas::all_tables()
            .into_iter()
            .find(|t| t.name == table)
            .map_or(0, |t| t.version);
        let (mut shards, upstream) = self.shards().await?;
        let config_hash = manifest::config_hash(
            stage.kind(),
            &stage.params(),
            table,
            schema_version,
            &upstream,
        );
        tracing::info!(stage = %self.stage.name, kind = stage.kind(), shards = shards.len(), config_hash = %config_hash, "stage starts");

        // The old manifest no longer describes the folder while we work in it.
        let manifest_loc = self.dir.join("_manifest.json");
        delete_if_present(&manifest_loc).await?;

        // A global stage's parts each depend on every input: a change anywhere reruns all.
        let inputs_identity = if stage.global() {
            let all = digest(
                shards
                    .iter()
                    .flat_map(|s| [s.recorded_url.as_str(), s.identity.as_str()]),
            );
            for s in &mut shards {
                s.identity = format!("{} inputs={}", s.identity, &all[..16]);
            }
            Some(all)
        } else {
            None
        };

        let total_bytes = shards.iter().map(|s| s.input.size).sum();
        let bar = progress.stage(&self.stage.name, shards.len(), total_bytes);
        let shared = Arc::new(ShardJob {
            stage_name: self.stage.name.clone(),
            stage: stage.clone(),
            schema: stage.output_schema(),
            dir: self.dir.clone(),
            config_hash: config_hash.clone(),
            force: self.force,
            threads: self.threads,
            bar: bar.clone(),
            abort_after: self.abort_after,
            committed: self.committed.clone(),
            ran: AtomicUsize::new(0),
        });
        let global = match &inputs_identity {
            Some(identity) => Some(self.global_step(&shared, &shards, identity).await?),
            None => None,
        };
        // A stage without parts (`Stage::per_shard` false) hands its inputs to its
        // whole-output step instead.
        let per_shard = stage.per_shard();
        let whole_inputs: Vec<(ShardInput, String)> = shards
            .iter()
            .map(|s| (s.input.clone(), s.identity.clone()))
            .collect();
        let input_entries: Vec<InputEntry> = shards
            .iter()
            .map(|s| InputEntry {
                url: s.recorded_url.clone(),
                size: s.input.size,
                sha256: s.known_sha256.clone().unwrap_or_default(),
                etag: s.etag.clone(),
            })
            .collect();
        let jobs = shards.into_iter().filter(|_| per_shard).map(|spec| {
            let job = shared.clone();
            tokio::spawn(async move { job.process(spec).await })
        });
        let markers: Vec<ShardMarker> = futures::stream::iter(jobs)
            .buffered(self.threads.max(1))
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) => Err(ExecError::Shard {
                    stage: self.stage.name.clone(),
                    url: String::new(),
                    message: format!("worker failed: {e}"),
                }),
            })
            .try_collect()
            .await?;
        bar.finish();
        self.remove_stale(&markers, global.is_some(), stage.finishes())
            .await?;
        let finished = if stage.finishes() {
            let (parts, identities): (Vec<ShardInput>, Vec<String>) = if per_shard {
                let parts = markers
                    .iter()
                    .enumerate()
                    .map(|(index, m)| part_input(&self.dir, index, &m.output, None))
                    .collect();
                let ids = markers.iter().map(|m| m.output.sha256.clone()).collect();
                (parts, ids)
            } else {
                whole_inputs.into_iter().unzip()
            };
            Some(self.finish_step(&shared, parts, &identities).await?)
        } else {
            None
        };

        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        let mut reports = Vec::new();
        if let Some(g) = &global {
            counters.extend(g.counters.clone());
            reports.extend(g.tables.clone());
        }
        if let Some(f) = &finished {
            counters.extend(f.counters.clone());
            reports.extend(f.files.clone());
        }
        for m in &markers {
            for (k, v) in &m.counters {
                *counters.entry(k.clone()).or_default() += v;
            }
        }
        let fraction = manifest::rejected_fraction(&counters);
        let limit = self.config.reject_limit(self.stage);
        let status = if fraction > limit {
            "rejects_exceeded"
        } else {
            "ok"
        };
        for (name, bytes) in stage.summary_files(&counters) {
            let loc = self.dir.join(&name);
            reports.push(OutputEntry {
                path: name,
                rows: 0,
                bytes: bytes.len() as u64,
                sha256: manifest::sha256_hex(&bytes),
            });
            put(&loc, bytes).await?;
        }
        let manifest = StageManifest {
            manifest_version: manifest::MANIFEST_VERSION,
            pipeline: self.config.name.clone(),
            stage: self.stage.name.clone(),
            kind: stage.kind().to_string(),
            table: table.to_string(),
            schema_version,
            config_hash,
            harman_version: manifest::harman_version().to_string(),
            git_revision: manifest::git_revision().to_string(),
            depends_on: self.stage.depends_on.clone(),
            params: manifest::canonical(&stage.params()),
            inputs: if per_shard {
                markers.iter().map(|m| m.input.clone()).collect()
            } else {
                input_entries
            },
            outputs: markers.iter().map(|m| m.output.clone()).collect(),
            rejects: markers.iter().filter_map(|m| m.rejects.clone()).collect(),
            reports,
            counters,
            rejected_fraction: fraction,
            max_reject_fraction: limit,
            status: status.to_string(),
        };
        put(&manifest_loc, manifest.to_json()).await?;
        let ran = shared.ran.load(Ordering::Relaxed);
        let outcome = StageOutcome {
            url: self.dir.url.clone(),
            shards_run: ran,
            shards_skipped: markers.len() - ran,
            seconds: started.elapsed().as_secs_f64(),
            manifest,
        };
        tracing::info!(
            stage = %self.stage.name,
            rows = outcome.manifest.rows(),
            shards_run = outcome.shards_run,
            shards_skipped = outcome.shards_skipped,
            seconds = outcome.seconds,
            "stage committed"
        );
        if fraction > limit {
            return Err(ExecError::RejectsExceeded {
                stage: self.stage.name.clone(),
                fraction,
                limit,
                url: self.dir.url.clone(),
            });
        }
        Ok(outcome)
    }

    /// A global stage's whole-input step: reused when its marker, its tables and every
    /// shard's marker still match, else run (`Stage::prepare`) and committed (tables from
    /// staging into place, then the marker).
    async fn global_step(
        &self,
        job: &Arc<ShardJob>,
        shards: &[ShardSpec],
        inputs_identity: &str,
    ) -> Result<GlobalMarker, ExecError> {
        let marker_loc = self.dir.join(GLOBAL_MARKER);
        if !self.force {
            if let Some(marker) = self
                .valid_global_marker(&marker_loc, inputs_identity, &job.config_hash)
                .await?
            {
                let mut all_committed = true;
                for spec in shards {
                    if job.existing_marker(spec).await?.is_none() {
                        all_committed = false;
                        break;
                    }
                }
                if all_committed {
                    tracing::info!(stage = %self.stage.name, "whole-input step committed earlier; reused");
                    return Ok(marker);
                }
            }
        }
        let inputs: Vec<ShardInput> = shards.iter().map(|s| s.input.clone()).collect();
        let prepared = self
            .stage
            .stage
            .prepare(&inputs, self.threads)
            .await
            .map_err(|e| ExecError::Shard {
                stage: self.stage.name.clone(),
                url: self.dir.url.clone(),
                message: e.to_string(),
            })?;
        for (phase, seconds) in &prepared.timings {
            tracing::info!(stage = %self.stage.name, phase = %phase, seconds, "whole-input phase done");
        }
        let mut tables = Vec::new();
        for (name, schema, stream) in prepared.tables {
            let staging = format!("_staging/{name}");
            let batches = stream.map(|b| b.map_err(|e| e.to_string()));
            let mut entry = write_parquet(&self.dir.join(&staging), schema, batches)
                .await
                .map_err(|message| ExecError::Shard {
                    stage: self.stage.name.clone(),
                    url: self.dir.url.clone(),
                    message,
                })?;
            job.rename(&staging, &name).await?;
            entry.path = name;
            tables.push(entry);
        }
        let marker = GlobalMarker {
            config_hash: job.config_hash.clone(),
            inputs_identity: inputs_identity.to_string(),
            tables,
            counters: prepared.counters,
        };
        put_json(&marker_loc, &marker).await?;
        Ok(marker)
    }

    /// A finishing stage's whole-output step: reused when its marker matches the config and
    /// every committed part and its files are intact, else run (`Stage::finish`, writing into
    /// `_staging/finish/`) and committed (files moved into place, files of an earlier run that
    /// are no longer made deleted, then the marker).
    async fn finish_step(
        &self,
        job: &Arc<ShardJob>,
        parts: Vec<ShardInput>,
        identities: &[String],
    ) -> Result<FinishMarker, ExecError> {
        let parts_identity = digest(identities.iter().map(String::as_str));
        let marker_loc = self.dir.join(FINISH_MARKER);
        let previous = read_marker::<FinishMarker>(&marker_loc).await?;
        if let Some(m) = &previous {
            if !self.force && m.config_hash == job.config_hash && m.parts_identity == parts_identity
            {
                let files: Vec<&OutputEntry> = m.files.iter().collect();
                if outputs_intact(&self.dir, &files).await? {
                    tracing::info!(stage = %self.stage.name, "whole-output step committed earlier; reused");
                    return Ok(m.clone());
                }
            }
        }
        // The marker no longer describes the files while they are rewritten.
        delete_if_present(&marker_loc).await?;
        let staging = self.dir.join("_staging/finish");
        let started = Instant::now();
        let finished = self
            .stage
            .stage
            .finish(FinishContext {
                store: self.dir.store.clone(),
                staging: staging.path.clone(),
                parts,
                threads: self.threads,
                local_dir: self.dir.local.clone(),
                config_hash: job.config_hash.clone(),
            })
            .await
            .map_err(|e| ExecError::Shard {
                stage: self.stage.name.clone(),
                url: self.dir.url.clone(),
                message: e.to_string(),
            })?;
        let mut files = Vec::new();
        for f in finished.files {
            job.rename(&format!("_staging/finish/{}", f.name), &f.name)
                .await?;
            files.push(OutputEntry {
                path: f.name,
                rows: f.rows,
                bytes: f.bytes,
                sha256: f.sha256,
            });
        }
        if let Some(old) = previous {
            for f in old.files {
                if !files.iter().any(|n| n.path == f.path) {
                    tracing::info!(stage = %self.stage.name, file = %f.path, "removing stale file");
                    delete_if_present(&self.dir.join(&f.path)).await?;
                }
            }
        }
        if let Some(local) = &self.dir.local {
            let _ = std::fs::remove_dir_all(local.join("_staging"));
        }
        tracing::info!(stage = %self.stage.name, files = files.len(), seconds = started.elapsed().as_secs_f64(), "whole-output step done");
        let marker = FinishMarker {
            config_hash: job.config_hash.clone(),
            parts_identity,
            files,
            counters: finished.counters,
        };
        put_json(&marker_loc, &marker).await?;
        Ok(marker)
    }

    async fn valid_global_marker(
        &self,
        loc: &Location,
        inputs_identity: &str,
        config_hash: &str,
    ) -> Result<Option<GlobalMarker>, ExecError> {
        let Some(marker) = read_marker::<GlobalMarker>(loc).await? else {
            return Ok(None);
        };
        if marker.config_hash != config_hash || marker.inputs_identity != inputs_identity {
            return Ok(None);
        }
        let tables: Vec<&OutputEntry> = marker.tables.iter().collect();
        let intact = outputs_intact(&self.dir, &tables).await?;
        Ok(intact.then_some(marker))
    }

    /// Delete outputs of shards that no longer exist and anything left in staging.
    async fn remove_stale(
        &self,
        markers: &[ShardMarker],
        global: bool,
        finishes: bool,
    ) -> Result<(), ExecError> {
        let mut keep: BTreeSet<String> = BTreeSet::new();
        if global {
            keep.insert(GLOBAL_MARKER.to_string());
        }
        if finishes {
            keep.insert(FINISH_MARKER.to_string());
        }
        for m in markers {
            keep.insert(m.output.path.clone());
            keep.insert(marker_name(m.shard));
            if let Some(r) = &m.rejects {
                keep.insert(r.path.clone());
            }
        }
        let listed: Vec<object_store::ObjectMeta> = self
            .dir
            .store
            .list(Some(&self.dir.path))
            .try_collect()
            .await
            .map_err(os_err(&self.dir.url))?;
        for meta in listed {
            let key = meta.location.as_ref();
            let rel = key
                .strip_prefix(self.dir.path.as_ref())
                .unwrap_or(key)
                .trim_start_matches('/')
                .to_string();
            let ours = rel.starts_with("_staging/")
                || rel.starts_with("_markers/")
                || rel.starts_with("rejects/")
                || (rel.starts_with("part-") && rel.ends_with(".parquet"));
            if ours && !keep.contains(&rel) {
                if rel.starts_with("_staging/") {
                    tracing::debug!(stage = %self.stage.name, file = %rel, "removing staged leftover");
                } else {
                    tracing::info!(stage = %self.stage.name, file = %rel, "removing stale file");
                }
                match self.dir.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(os_err(&self.dir.url)(e)),
                }
            }
        }
        // Local folders linger after their files are gone, and a killed run can leave
        // object_store's own temporary files (`part-00009.parquet#1`), which its listing
        // hides: every shard of this run is committed, so all of `_staging` is leftover.
        if let Some(local) = &self.dir.local {
            let _ = std::fs::remove_dir_all(local.join("_staging"));
        }
        Ok(())
    }
}

/// The commit marker of a global stage's whole-input step.
const GLOBAL_MARKER: &str = "_markers/global.json";
/// The commit marker of a finishing stage's whole-output step.
const FINISH_MARKER: &str = "_markers/finish.json";

fn part_name(shard: usize) -> String {
    format!("part-{shard:05}.parquet")
}

fn marker_name(shard: usize) -> String {
    format!("_markers/part-{shard:05}.json")
}

/// Everything a shard task needs.
struct ShardJob {
    stage_name: String,
    stage: Arc<dyn Stage>,
    schema: SchemaRef,
    dir: Location,
    config_hash: String,
    force: bool,
    threads: usize,
    bar: StageProgress,
    abort_after: Option<usize>,
    committed: Arc<AtomicUsize>,
    ran: AtomicUsize,
}

impl ShardJob {
    fn err(&self, url: &str, message: impl ToString) -> ExecError {
        ExecError::Shard {
            stage: self.stage_name.clone(),
            url: url.to_string(),
            message: message.to_string(),
        }
    }

    async fn existing_marker(&self, spec: &ShardSpec) -> Result<Option<ShardMarker>, ExecError> {
        let loc = self.dir.join(&marker_name(spec.input.index));
        let Some(marker) = read_marker::<ShardMarker>(&loc).await? else {
            return Ok(None);
        };
        if marker.config_hash != self.config_hash
            || marker.input_identity != spec.identity
            || marker.input.url != spec.recorded_url
            || marker.shard != spec.input.index
        {
            return Ok(None);
        }
        // The committed outputs must still be there, whole.
        let mut outputs = vec![&marker.output];
        outputs.extend(marker.rejects.as_ref());
        let intact = outputs_intact(&self.dir, &outputs).await?;
        Ok(intact.then_some(marker))
    }

    async fn process(self: Arc<Self>, spec: ShardSpec) -> Result<ShardMarker, ExecError> {
        let url = spec.input.url.clone();
        if !self.force {
            if let Some(marker) = self.existing_marker(&spec).await? {
                let rejected = harman_stages::rejected_total(&marker.counters);
                self.bar.shard_done(
                    &url,
                    spec.input.size,
                    marker.output.rows,
                    rejected,
                    true,
                    None,
                );
                return Ok(marker);
            }
        }
        self.ran.fetch_add(1, Ordering::Relaxed);
        let report = Arc::new(ShardReport::new());
        self.bar.track(report.bytes_read.clone());
        // No round-robin repartitioning: it would spread a shard's batches over threads and
        // merge them back in whatever order they finish, so the part's row order (and bytes)
        // would depend on the thread count. Shards run side by side instead.
        let session = SessionContext::new_with_config(
            SessionConfig::new()
                .with_target_partitions(self.threads.max(1))
                .with_round_robin_repartition(false),
        );
        let df = self
            .stage
            .plan_shard(&session, &spec.input, report.clone())
            .await
            .map_err(|e| self.err(&url, e))?;
        let stream = df.execute_stream().await.map_err(|e| self.err(&url, e))?;
        let part = part_name(spec.input.index);
        let staging = self.dir.join(&format!("_staging/{part}"));
        let schema = self.schema.clone();
        let batches = stream.map(|b| b.map_err(|e| e.to_string()));
        let mut output = write_parquet(&staging, schema, batches)
            .await
            .map_err(|e| self.err(&url, e))?;
        output.path = part.clone();

        let data = report.snapshot();
        let rejects = if data.rejects.is_empty() {
            None
        } else {
            let batch = rejects_batch(&self.stage_name, &url, &data.rejects)
                .map_err(|e| self.err(&url, e))?;
            let staging = self.dir.join(&format!("_staging/rejects-{part}"));
            let schema = batch.schema();
            let mut entry = write_parquet(&staging, schema, futures::stream::iter([Ok(batch)]))
                .await
                .map_err(|e| self.err(&url, e))?;
            entry.path = format!("rejects/{part}");
            Some(entry)
        };
        let sha256 = match data.input_sha256.clone().or(spec.known_sha256.clone()) {
            Some(s) => s,
            None => hash_object(&spec.input.store, &spec.input.path, &url).await?,
        };

        if let Some(k) = self.abort_after {
            if self.committed.load(Ordering::SeqCst) >= k {
                eprintln!(
                    "{ABORT_HOOK_ENV}={k}: exiting with shard {url} staged but not committed"
                );
                std::process::exit(ABORT_HOOK_STATUS);
            }
        }
        // Commit: outputs into place, then the marker.
        self.rename(&format!("_staging/{part}"), &output.path)
            .await?;
        if let Some(r) = &rejects {
            self.rename(&format!("_staging/rejects-{part}"), &r.path)
                .await?;
        }
        let marker = ShardMarker {
            shard: spec.input.index,
            config_hash: self.config_hash.clone(),
            input_identity: spec.identity.clone(),
            input: InputEntry {
                url: spec.recorded_url.clone(),
                size: spec.input.size,
                sha256,
                etag: spec.etag.clone(),
            },
            output,
            rejects,
            counters: data.counters.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&marker).map_err(|e| self.err(&url, e))?;
        json.push(b'\n');
        put(&self.dir.join(&marker_name(spec.input.index)), json).await?;
        self.committed.fetch_add(1, Ordering::SeqCst);
        self.bar.shard_done(
            &url,
            spec.input.size,
            marker.output.rows,
            data.rejected(),
            false,
            Some(&report.bytes_read),
        );
        Ok(marker)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), ExecError> {
        let a = self.dir.join(from);
        let b = self.dir.join(to);
        self.dir
            .store
            .rename(&a.path, &b.path)
            .await
            .map_err(os_err(&b.url))
    }
}

/// A stage output part (`out`, in the stage folder `dir`) as the input shard `index` of a
/// reader of that folder.
fn part_input(
    dir: &Location,
    index: usize,
    out: &OutputEntry,
    origin: Option<String>,
) -> ShardInput {
    let loc = dir.join(&out.path);
    ShardInput {
        index,
        url: loc.url,
        store: loc.store,
        path: loc.path,
        size: out.bytes,
        local_path: loc.local,
        origin,
    }
}

/// sha256 (hex) of strings, each followed by a 0 byte: the identity of a list of inputs.
fn digest<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for item in items {
        h.update(item.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A commit marker as pretty JSON.
async fn put_json<T: serde::Serialize>(loc: &Location, value: &T) -> Result<(), ExecError> {
    let mut json =
        serde_json::to_vec_pretty(value).map_err(|e| ExecError::Manifest(e.to_string()))?;
    json.push(b'\n');
    put(loc, json).await
}

/// Deletes an object; one that is not there is fine.
async fn delete_if_present(loc: &Location) -> Result<(), ExecError> {
    match loc.store.delete(&loc.path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(os_err(&loc.url)(e)),
    }
}

async fn put(loc: &Location, bytes: Vec<u8>) -> Result<(), ExecError> {
    loc.store
        .put(&loc.path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(os_err(&loc.url))
}

/// sha256 of an object, streamed.
pub async fn hash_object(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    url: &str,
) -> Result<String, ExecError> {
    let get = store.get(path).await.map_err(os_err(url))?;
    let mut stream = get.into_stream();
    let mut h = Sha256::new();
    while let Some(chunk) = stream.next().await {
        h.update(chunk.map_err(os_err(url))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// The `rejects` table rows of a shard.
fn rejects_batch(
    stage: &str,
    url: &str,
    rows: &[RejectRow],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut s = StringBuilder::new();
    let mut u = StringBuilder::new();
    let mut o = UInt64Builder::new();
    let mut i = UInt64Builder::new();
    let mut r = StringBuilder::new();
    let mut d = StringBuilder::new();
    for row in rows {
        s.append_value(stage);
        u.append_value(url);
        o.append_value(row.offset);
        i.append_option(row.index);
        r.append_value(row.reason.as_str());
        d.append_value(&row.detail);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(s.finish()),
        Arc::new(u.finish()),
        Arc::new(o.finish()),
        Arc::new(i.finish()),
        Arc::new(r.finish()),
        Arc::new(d.finish()),
    ];
    RecordBatch::try_new(Arc::new(harman_schemas::rejects_schema()), columns)
}

/// Fixed writer settings: the same batches always give the same bytes.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_created_by(format!("harman {}", manifest::harman_version()))
        .build()
}

/// Sha256 and size of what passes through, shared with the caller.
#[derive(Default)]
struct Digesting {
    hasher: Sha256,
    bytes: u64,
}

struct HashingWriter {
    inner: object_store::buffered::BufWriter,
    digest: Arc<Mutex<Digesting>>,
}

impl tokio::io::AsyncWrite for HashingWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                let mut d = this.digest.lock().unwrap_or_else(|p| p.into_inner());
                d.hasher.update(&buf[..n]);
                d.bytes += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Write batches as one Parquet file at `loc`, checking each against `schema`. Returns the
/// file's rows, size and sha256 (path left empty for the caller).
pub async fn write_parquet(
    loc: &Location,
    schema: SchemaRef,
    mut batches: impl futures::Stream<Item = Result<RecordBatch, String>> + Unpin,
) -> Result<OutputEntry, String> {
    let digest = Arc::new(Mutex::new(Digesting::default()));
    let writer = HashingWriter {
        inner: object_store::buffered::BufWriter::new(loc.store.clone(), loc.path.clone()),
        digest: digest.clone(),
    };
    let mut w = AsyncArrowWriter::try_new(writer, schema.clone(), Some(writer_properties()))
        .map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        // Same columns and types as the table (a plan's schema-level metadata, e.g. that of
        // its input table, is replaced by the output table's).
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| format!("output does not match its table: {e}"))?;
        harman_schemas::validate_batch(&batch, &schema).map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        w.write(&batch).await.map_err(|e| e.to_string())?;
    }
    w.close().await.map_err(|e| format!("{}: {e}", loc.url))?;
    let d = digest.lock().unwrap_or_else(|p| p.into_inner());
    Ok(OutputEntry {
        path: String::new(),
        rows,
        bytes: d.bytes,
        sha256: hex::encode(d.hasher.clone().finalize()),
    })
}
