//! `verdict cluster status|add-node|remove-node`.

use clap::Subcommand;
use serde_json::Value;
use verdict::cluster::admin;
use verdict::coordinator::validate;

use super::Coordinator;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Print members, leader, term, log indexes and each member's replication lag.
    Status {
        #[command(flatten)]
        coordinator: Coordinator,
        /// Print one JSON object: the leader's view, with every asked node's own.
        #[arg(long)]
        json: bool,
        /// Also fingerprint each node's records (reading them all): on a quiet cluster, every
        /// node at the same applied index must show the same digest.
        #[arg(long)]
        digest: bool,
    },
    /// Add a node started with `--join`: it joins as a learner, catches up, then votes.
    AddNode {
        /// The new node as ID=URL.
        node: String,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Remove a node from the cluster (joint consensus); stop it afterwards.
    RemoveNode {
        id: u64,
        #[command(flatten)]
        coordinator: Coordinator,
    },
}

fn urls(coordinator: &Coordinator) -> anyhow::Result<Vec<String>> {
    validate::urls("--coordinator", &coordinator.urls)?;
    Ok(coordinator
        .urls
        .split(',')
        .map(|u| u.trim().to_owned())
        .collect())
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status {
            coordinator,
            json,
            digest,
        } => status(&urls(&coordinator)?, json, digest).await,
        ClusterCommand::AddNode { node, coordinator } => {
            let (id, url) = node.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("{node:?} is not ID=URL (e.g. 4=http://10.0.0.4:7400)")
            })?;
            let id: u64 = id
                .parse()
                .map_err(|_| anyhow::anyhow!("{id:?} is not a node id"))?;
            validate::url("the new node's URL", url)?;
            let view = admin::add_node(&urls(&coordinator)?, id, url).await?;
            println!("added node {id}; the cluster now:");
            status(&member_urls(&view), false, false).await
        }
        ClusterCommand::RemoveNode { id, coordinator } => {
            let view = admin::remove_node(&urls(&coordinator)?, id).await?;
            println!("removed node {id}; the cluster now:");
            status(&member_urls(&view), false, false).await
        }
    }
}

fn member_urls(view: &Value) -> Vec<String> {
    let members = view["members"].as_array().into_iter().flatten();
    members
        .filter_map(|m| m["url"].as_str().map(str::to_owned))
        .collect()
}

async fn status(urls: &[String], json: bool, digest: bool) -> anyhow::Result<()> {
    let views = admin::views(urls, digest).await;
    let answered: Vec<&Value> = views.iter().filter_map(|(_, v)| v.as_ref().ok()).collect();
    anyhow::ensure!(
        !answered.is_empty(),
        "no node answered: {}",
        views
            .iter()
            .map(|(url, v)| format!(
                "{url}: {}",
                v.as_ref().err().map(|e| e.message()).unwrap_or("")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The leader's view has the replication lag; without a leader, any node's will do.
    let main = answered
        .iter()
        .find(|v| v["state"] == "Leader")
        .unwrap_or(&answered[0]);
    if json {
        let mut out = (*main).clone();
        out["nodes"] = views
            .iter()
            .map(|(url, v)| match v {
                Ok(view) => view.clone(),
                Err(e) => serde_json::json!({ "url": url, "error": e.message() }),
            })
            .collect();
        println!("{out}");
    } else {
        print!("{}", table(main, &answered));
        if digest {
            print!("{}", digests(&answered));
        }
    }
    Ok(())
}

/// Each node's records digest, and whether those at the same applied index agree.
fn digests(views: &[&Value]) -> String {
    let mut out = String::from("  node  applied  records  crc32\n");
    for view in views {
        let digest = &view["digest"];
        out += &format!(
            "  {:<4}  {:>7}  {:>7}  {}\n",
            text(&view["node_id"]),
            text(&digest["applied_index"]),
            text(&digest["records"]),
            text(&digest["crc32"]),
        );
    }
    out
}

/// A JSON value as a table cell.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The status as a table: the leader's view of the members, with each member's own state.
fn table(view: &Value, own: &[&Value]) -> String {
    let mut out = format!(
        "leader {} (term {}), as node {} sees it\n",
        text(&view["leader"]),
        view["term"],
        view["node_id"]
    );
    out += "  node  url                           role     state        applied  matched  lag\n";
    for member in view["members"].as_array().into_iter().flatten() {
        let mine = own.iter().find(|v| v["node_id"] == member["id"]);
        let field = |key: &str| mine.map_or("unreachable".into(), |v| text(&v[key]));
        let role = match member["voter"] == true {
            true => "voter",
            false => "learner",
        };
        out += &format!(
            "  {:<4}  {:<28}  {:<7}  {:<11}  {:>7}  {:>7}  {:>3}\n",
            text(&member["id"]),
            text(&member["url"]),
            role,
            field("state"),
            field("last_applied_index"),
            text(&member["matched_index"]),
            text(&member["lag"]),
        );
    }
    out
}
