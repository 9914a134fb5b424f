//! The stage DAG: validation (known dependencies, no cycles, sources without upstreams),
//! topological order, selection for `--only`/`--from`, and rendering as text, Mermaid and
//! Graphviz.

use crate::config::{PipelineConfig, StageConfig};
use harman_stages::StageInputs;
use std::collections::BTreeSet;

/// A DAG problem: the stage, the key at fault, and the message.
pub type DagError = (String, Option<&'static str>, String);

/// Check dependencies and acyclicity.
pub fn check(config: &PipelineConfig) -> Result<(), DagError> {
    let names: BTreeSet<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
    for s in &config.stages {
        for d in &s.depends_on {
            if d == &s.name {
                return Err((
                    s.name.clone(),
                    Some("depends_on"),
                    "a stage cannot depend on itself".into(),
                ));
            }
            if !names.contains(d.as_str()) {
                return Err((
                    s.name.clone(),
                    Some("depends_on"),
                    format!(
                        "unknown stage {d:?}; stages in this config: {}",
                        names.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if let Some(want) = s.stage.input_table() {
            for d in &s.depends_on {
                let Some(up) = config.stages.iter().find(|u| &u.name == d) else {
                    continue;
                };
                let got = up.stage.output_table();
                if got != want {
                    let writers: Vec<&str> = config
                        .stages
                        .iter()
                        .filter(|u| u.stage.output_table() == want)
                        .map(|u| u.name.as_str())
                        .collect();
                    return Err((
                        s.name.clone(),
                        Some("depends_on"),
                        format!(
                            "a `{}` stage reads `{want}` tables, but `{d}` (a `{}` stage) writes `{got}`; depend on a stage that writes `{want}`{}",
                            s.kind,
                            up.kind,
                            if writers.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", writers.join(", "))
                            }
                        ),
                    ));
                }
            }
        }
        match s.stage.inputs() {
            StageInputs::Urls(_) if !s.depends_on.is_empty() => {
                return Err((
                    s.name.clone(),
                    Some("depends_on"),
                    format!("a `{}` stage reads its own `inputs`; remove depends_on", s.kind),
                ))
            }
            StageInputs::Upstream if s.depends_on.is_empty() => {
                return Err((
                    s.name.clone(),
                    Some("depends_on"),
                    format!("a `{}` stage reads the output of other stages; name them, e.g. depends_on = [\"ingest\"]", s.kind),
                ))
            }
            _ => {}
        }
    }
    topo_order(config).map(|_| ())
}

/// Stages in dependency order (ties broken by file order), or the cycle.
pub fn topo_order(config: &PipelineConfig) -> Result<Vec<&StageConfig>, DagError> {
    let mut indegree: Vec<usize> = config.stages.iter().map(|s| s.depends_on.len()).collect();
    let mut done = vec![false; config.stages.len()];
    let mut order = Vec::new();
    while order.len() < config.stages.len() {
        let Some(next) = (0..config.stages.len()).find(|&i| !done[i] && indegree[i] == 0) else {
            let cycle: Vec<&str> = (0..config.stages.len())
                .filter(|&i| !done[i])
                .map(|i| config.stages[i].name.as_str())
                .collect();
            return Err((
                cycle[0].to_string(),
                Some("depends_on"),
                format!(
                    "dependency cycle among stages {}; remove one of their depends_on entries",
                    cycle.join(", ")
                ),
            ));
        };
        done[next] = true;
        order.push(&config.stages[next]);
        let name = config.stages[next].name.as_str();
        for (i, s) in config.stages.iter().enumerate() {
            if s.depends_on.iter().any(|d| d == name) {
                indegree[i] -= 1;
            }
        }
    }
    Ok(order)
}

/// The stages a run executes: all, `--only NAME`, or `--from NAME` and everything downstream.
pub fn select<'c>(
    config: &'c PipelineConfig,
    only: Option<&str>,
    from: Option<&str>,
) -> Result<Vec<&'c StageConfig>, String> {
    let order = topo_order(config).map_err(|e| e.2)?;
    let known = |name: &str| {
        if config.stage(name).is_none() {
            Err(format!(
                "no stage named {name:?}; stages: {}",
                config
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Ok(())
        }
    };
    match (only, from) {
        (Some(_), Some(_)) => Err("use either --only or --from, not both".into()),
        (Some(name), None) => {
            known(name)?;
            Ok(order.into_iter().filter(|s| s.name == name).collect())
        }
        (None, Some(name)) => {
            known(name)?;
            let mut selected: BTreeSet<&str> = BTreeSet::from([name]);
            for s in &order {
                if s.depends_on.iter().any(|d| selected.contains(d.as_str())) {
                    selected.insert(s.name.as_str());
                }
            }
            Ok(order
                .into_iter()
                .filter(|s| selected.contains(s.name.as_str()))
                .collect())
        }
        (None, None) => Ok(order),
    }
}

fn inputs_label(s: &StageConfig) -> String {
    match s.stage.inputs() {
        StageInputs::Urls(urls) => urls.join(", "),
        StageInputs::Upstream => s.depends_on.join(" + "),
    }
}

/// The plan as plain text.
pub fn render_text(config: &PipelineConfig, output: &str) -> String {
    let mut out = format!("pipeline {} → {}\n", config.name, output);
    let order = topo_order(config).unwrap_or_default();
    for (i, s) in order.iter().enumerate() {
        out.push_str(&format!(
            "{:>2}. {} [{}] → {}/{}/ ({} table)\n      reads: {}\n",
            i + 1,
            s.name,
            s.kind,
            output.trim_end_matches('/'),
            s.name,
            s.stage.output_table(),
            inputs_label(s)
        ));
    }
    out
}

fn node_id(name: &str) -> String {
    name.replace('-', "_")
}

/// The plan as a Mermaid flowchart.
pub fn render_mermaid(config: &PipelineConfig) -> String {
    let mut out = String::from("flowchart TD\n");
    for s in &config.stages {
        if let StageInputs::Urls(urls) = s.stage.inputs() {
            out.push_str(&format!(
                "  {}_in[(\"{}\")] --> {}\n",
                node_id(&s.name),
                urls.join("<br/>").replace('"', "'"),
                node_id(&s.name)
            ));
        }
        out.push_str(&format!(
            "  {}[\"{}<br/>{}\"]\n",
            node_id(&s.name),
            s.name,
            s.kind
        ));
        for d in &s.depends_on {
            out.push_str(&format!("  {} --> {}\n", node_id(d), node_id(&s.name)));
        }
    }
    out
}

/// The plan as a Graphviz digraph.
pub fn render_dot(config: &PipelineConfig) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n",
        config.name.replace('"', "'")
    );
    for s in &config.stages {
        out.push_str(&format!(
            "  \"{}\" [shape=box, label=\"{}\\n{}\"];\n",
            s.name, s.name, s.kind
        ));
        if let StageInputs::Urls(urls) = s.stage.inputs() {
            for u in urls {
                out.push_str(&format!(
                    "  \"{}\" [shape=cylinder];\n  \"{}\" -> \"{}\";\n",
                    u.replace('"', "'"),
                    u.replace('"', "'"),
                    s.name
                ));
            }
        }
        for d in &s.depends_on {
            out.push_str(&format!("  \"{}\" -> \"{}\";\n", d, s.name));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harman_stages::{OptionError, ShardInput, ShardReport, Stage, StageError, StageRegistry};
    use std::path::Path;
    use std::sync::Arc;

    /// A stage reading other stages' output, to build DAGs with edges (no transform stage
    /// kind exists yet in this build).
    #[derive(Debug)]
    struct Passthrough;

    #[async_trait::async_trait]
    impl Stage for Passthrough {
        fn kind(&self) -> &'static str {
            "passthrough"
        }
        fn output_table(&self) -> &'static str {
            "documents"
        }
        fn output_schema(&self) -> arrow::datatypes::SchemaRef {
            Arc::new(harman_schemas::documents_schema())
        }
        fn params(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn inputs(&self) -> StageInputs {
            StageInputs::Upstream
        }
        async fn plan_shard(
            &self,
            _: &datafusion::prelude::SessionContext,
            _: &ShardInput,
            _: Arc<ShardReport>,
        ) -> Result<datafusion::prelude::DataFrame, StageError> {
            Err(StageError::Input("not runnable".into()))
        }
    }

    fn registry() -> StageRegistry {
        let mut r = harman_stages::registry();
        r.register("passthrough", |_, _| {
            Ok::<_, OptionError>(Arc::new(Passthrough))
        });
        r
    }

    fn config(stages: &str) -> Result<PipelineConfig, crate::config::ConfigError> {
        let text = format!("[pipeline]\noutput = \"out\"\n{stages}");
        crate::config::parse(&text, Path::new("t.toml"), &registry())
    }

    const DIAMOND: &str = "[stages.d]\nkind = \"passthrough\"\ndepends_on = [\"b\", \"c\"]\n\
        [stages.b]\nkind = \"passthrough\"\ndepends_on = [\"a\"]\n\
        [stages.c]\nkind = \"passthrough\"\ndepends_on = [\"a\"]\n\
        [stages.a]\nkind = \"ingest\"\ninputs = [\"x\"]\n\
        [stages.z]\nkind = \"ingest\"\ninputs = [\"y\"]\n";

    fn names(stages: &[&StageConfig]) -> Vec<String> {
        stages.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn order_respects_edges_then_file_order() {
        let c = config(DIAMOND).unwrap();
        assert_eq!(names(&topo_order(&c).unwrap()), ["a", "b", "c", "d", "z"]);
        assert_eq!(names(&select(&c, None, Some("b")).unwrap()), ["b", "d"]);
        assert_eq!(names(&select(&c, Some("c"), None).unwrap()), ["c"]);
        assert!(select(&c, Some("nope"), None)
            .unwrap_err()
            .contains("no stage named"));
        let mermaid = render_mermaid(&c);
        assert!(
            mermaid.contains("  b --> d") && mermaid.contains("  a --> c"),
            "{mermaid}"
        );
        assert!(render_dot(&c).contains("\"a\" -> \"b\";"));
    }

    #[test]
    fn cycles_unknown_and_misplaced_dependencies_are_config_errors() {
        let e = config("[stages.a]\nkind = \"passthrough\"\ndepends_on = [\"b\"]\n[stages.b]\nkind = \"passthrough\"\ndepends_on = [\"a\"]\n").unwrap_err();
        assert!(e.message.contains("cycle among stages a, b"), "{e}");
        let e = config("[stages.a]\nkind = \"passthrough\"\ndepends_on = [\"q\"]\n").unwrap_err();
        assert!(e.message.contains("unknown stage \"q\""), "{e}");
        assert_eq!(e.line, Some(5));
        let e = config("[stages.a]\nkind = \"passthrough\"\n").unwrap_err();
        assert!(e.message.contains("name them"), "{e}");
        let e = config("[stages.a]\nkind = \"ingest\"\ninputs = [\"x\"]\ndepends_on = [\"a\"]\n")
            .unwrap_err();
        assert!(e.message.contains("itself"), "{e}");
    }
}
