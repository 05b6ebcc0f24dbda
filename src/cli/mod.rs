//! The `superx` client commands: `send`, `tasks`, `agents`, `cluster`, `completions`. They talk
//! to any node over its public API (`--url` or `SUPERX_URL`; `SUPERX_TOKEN` as the bearer, an
//! API key, the admin token or a JWT), print a readable table or, with `--json`, the gateway's
//! JSON, and exit with a code that says what went wrong ([`client::CliError::exit_code`]).
//! A2A JSON is built and read by `a2a::client`; this module is arguments and output.

/// Writes to stdout; a closed pipe (`| head`) is the reader's choice, not a crash.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

mod client;
mod progress;
mod render;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::a2a::TaskState;
use crate::a2a::client::{self as a2a, StreamEvent, Summary};
pub use client::{CliError, Client};

/// Where the client commands go and who they are.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The gateway node's API (env SUPERX_URL).
    #[arg(long, env = "SUPERX_URL", default_value = "http://127.0.0.1:4000", global = true)]
    pub url: String,
    /// Print the gateway's JSON instead of a table (one JSON value per line for streams).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client commands (flattened into `superx`'s own).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Send a message to an agent and print its reply.
    Send(SendArgs),
    /// Read, list, cancel and watch tasks.
    Tasks(Group<TasksCommand>),
    /// List, add, remove agents and see their health (admin credential when auth is on).
    Agents(Group<AgentsCommand>),
    /// The cluster as this node sees it (admin credential when auth is on).
    Cluster(Group<ClusterCommand>),
}

/// A command group with the target options, which its subcommands take too.
#[derive(Args, Debug)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: C,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: Target,
    /// The agent's id at the gateway.
    pub agent: String,
    /// The message text (several words are joined with spaces).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// Stream the task's events as they happen (SendStreamingMessage).
    #[arg(long)]
    pub stream: bool,
    /// Continue a conversation.
    #[arg(long)]
    pub context_id: Option<String>,
    /// Continue a task (for example one waiting for input).
    #[arg(long)]
    pub task_id: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// One task: state, text, ids.
    Get { id: String },
    /// Tasks, newest first.
    List {
        /// Only this agent's tasks.
        #[arg(long)]
        agent: Option<String>,
        /// Only tasks in this state (completed, working, ...).
        #[arg(long, value_parser = parse_state)]
        state: Option<TaskState>,
        /// Only this conversation's tasks.
        #[arg(long)]
        context_id: Option<String>,
        /// At most this many tasks (pages are fetched until then).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Cancel a running task.
    Cancel { id: String },
    /// Follow a task's events live until it ends.
    Watch { id: String },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Registered agents.
    List,
    /// Register (or update) an agent.
    Add {
        id: String,
        /// The agent's A2A endpoint (its card is fetched from there).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Name of an environment variable holding the agent's bearer token (never a flag:
        /// flags show in `ps`).
        #[arg(long)]
        bearer_env: Option<String>,
    },
    /// Remove an agent.
    Remove { id: String },
    /// Breaker, in-flight and recent failures per agent, on the node asked.
    Health,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Role, term, indexes and members.
    Status,
}

fn parse_state(s: &str) -> Result<TaskState, String> {
    TaskState::from_v03(s)
        .or_else(|| TaskState::from_v10(s))
        .ok_or_else(|| format!("not a task state: {s} (completed, working, failed, canceled, ...)"))
}

/// Runs a client command to its exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let target = match &command {
        ClientCommand::Send(a) => a.target.clone(),
        ClientCommand::Tasks(g) => g.target.clone(),
        ClientCommand::Agents(g) => g.target.clone(),
        ClientCommand::Cluster(g) => g.target.clone(),
    };
    let token = std::env::var("SUPERX_TOKEN").ok();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))
        .and_then(|rt| {
            let client = Client::new(&target.url, token)?;
            rt.block_on(dispatch(&client, target.json, command))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("superx: {}", e.message());
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(client: &Client, json: bool, command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Send(args) => send(client, json, args).await,
        ClientCommand::Tasks(Group { command: TasksCommand::Get { id }, .. }) => {
            let task = client.call("/rpc", "GetTask", a2a::task_params(&id)).await?;
            print_task(json, &task);
            Ok(())
        }
        ClientCommand::Tasks(Group { command: TasksCommand::List { agent, state, context_id, limit }, .. }) => {
            list(client, json, agent.as_deref(), state, context_id.as_deref(), limit).await
        }
        ClientCommand::Tasks(Group { command: TasksCommand::Cancel { id }, .. }) => {
            let task = client.call("/rpc", "CancelTask", a2a::task_params(&id)).await?;
            print_task(json, &task);
            Ok(())
        }
        ClientCommand::Tasks(Group { command: TasksCommand::Watch { id }, .. }) => watch(client, json, &id).await,
        ClientCommand::Agents(group) => agents(client, json, group.command).await,
        ClientCommand::Cluster(Group { command: ClusterCommand::Status, .. }) => {
            let status = client.call("/rpc", "cluster/status", json!({})).await?;
            if json {
                print_json(&status);
            } else {
                out!("{}", cluster_text(&status));
            }
            Ok(())
        }
    }
}

async fn send(client: &Client, json: bool, args: SendArgs) -> Result<(), CliError> {
    let path = format!("/agents/{}", args.agent);
    let params = a2a::send_params(&args.text.join(" "), args.context_id.as_deref(), args.task_id.as_deref());
    if args.stream {
        return follow(client, json, &path, "SendStreamingMessage", params).await;
    }
    let result = client.call(&path, "SendMessage", params).await?;
    if json {
        print_json(&result);
        return Ok(());
    }
    let reply = a2a::summarize(&result);
    outln!("{}", reply.text);
    describe(&reply);
    ended_well(&reply)
}

/// Prints a stream's events as they come (text live on stdout, progress on a terminal's
/// stderr), until the task ends.
async fn follow(client: &Client, json: bool, path: &str, method: &str, params: Value) -> Result<(), CliError> {
    let progress = progress::Progress::start(!json);
    let mut last = Summary::default();
    let mut mid_line = false;
    let outcome = client
        .stream(path, method, params, |result| {
            let event = a2a::stream_event(result);
            if json {
                print_json_line(result);
            } else {
                show_event(&progress, &event, &mut mid_line);
            }
            progress.event(&event);
            remember(&mut last, &event);
            !event.ends()
        })
        .await;
    progress.finish();
    outcome?;
    if !json {
        if mid_line {
            outln!("");
        }
        describe(&last);
    }
    ended_well(&last)
}

/// Artifact chunks print inline (an appended chunk continues its line); a new artifact, a
/// message and a status message each start a line of their own.
fn show_event(progress: &progress::Progress, event: &StreamEvent, mid_line: &mut bool) {
    let (text, inline) = match event {
        StreamEvent::Artifact { text, append, .. } => (text.as_str(), *append),
        StreamEvent::Message(m) => (m.text.as_str(), false),
        StreamEvent::Status { text, .. } => (text.as_str(), false),
        _ => return,
    };
    if text.is_empty() {
        return;
    }
    if *mid_line && !inline {
        progress.print("\n");
    }
    progress.print(text);
    *mid_line = true;
}

fn remember(last: &mut Summary, event: &StreamEvent) {
    match event {
        StreamEvent::Task(s) | StreamEvent::Message(s) => *last = s.clone(),
        StreamEvent::Status { state, task_id, .. } => {
            last.state = *state;
            if last.task_id.is_empty() {
                last.task_id = task_id.clone();
            }
        }
        _ => {}
    }
}

/// The task line on stderr, so stdout is only the reply.
fn describe(s: &Summary) {
    if s.task_id.is_empty() {
        return;
    }
    eprintln!("task {} {} (context {})", s.task_id, s.state_name(), s.context_id);
}

/// A task that failed, was rejected or canceled is a failed command.
fn ended_well(s: &Summary) -> Result<(), CliError> {
    match s.state {
        Some(state @ (TaskState::Failed | TaskState::Rejected | TaskState::Canceled)) => {
            Err(CliError::Failed(format!("task {} ended {}", s.task_id, state.v03_name())))
        }
        _ => Ok(()),
    }
}

async fn watch(client: &Client, json: bool, id: &str) -> Result<(), CliError> {
    match follow(client, json, "/rpc", "SubscribeToTask", a2a::task_params(id)).await {
        // A task that already ended cannot be subscribed to: show where it ended.
        Err(CliError::Failed(m)) if m.contains("(code -32004)") => {
            let task = client.call("/rpc", "GetTask", a2a::task_params(id)).await?;
            print_task(json, &task);
            Ok(())
        }
        other => other,
    }
}

async fn list(
    client: &Client,
    json: bool,
    agent: Option<&str>,
    state: Option<TaskState>,
    context_id: Option<&str>,
    limit: u32,
) -> Result<(), CliError> {
    let path = agent.map_or_else(|| "/rpc".to_string(), |a| format!("/agents/{a}"));
    let mut tasks = Vec::new();
    let mut summaries = Vec::new();
    let mut token: Option<String> = None;
    let mut total = 0;
    while (tasks.len() as u32) < limit {
        let page = (limit - tasks.len() as u32).min(100);
        let result =
            client.call(&path, "ListTasks", a2a::list_params(state, context_id, page, token.as_deref())).await?;
        let (page_summaries, next, size) = a2a::summarize_list(&result);
        total = size;
        tasks.extend(result["tasks"].as_array().cloned().unwrap_or_default());
        summaries.extend(page_summaries);
        if next.is_empty() {
            break;
        }
        token = Some(next);
    }
    if json {
        print_json(&json!({"tasks": tasks, "totalSize": total}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![s.task_id.clone(), s.state_name().to_string(), s.updated.clone(), s.context_id.clone(), s.text.clone()]
        })
        .collect();
    out!("{}", render::table(&["TASK", "STATE", "UPDATED", "CONTEXT", "TEXT"], &rows));
    eprintln!("{} of {total} tasks", summaries.len());
    Ok(())
}

async fn agents(client: &Client, json: bool, command: AgentsCommand) -> Result<(), CliError> {
    let (result, header, rows): (Value, &[&str], RowOf) = match command {
        AgentsCommand::List => (
            client.call("/rpc", "agents/list", json!({})).await?,
            &["AGENT", "NAME", "SOURCE", "BINDING", "URL"],
            agent_row,
        ),
        AgentsCommand::Health => (
            client.call("/rpc", "agents/health", json!({})).await?,
            &["AGENT", "NODE", "BREAKER", "IN-FLIGHT", "CALLS", "FAILURES", "LAST SUCCESS", "LAST ERROR"],
            health_row,
        ),
        AgentsCommand::Add { id, endpoint, bearer_env } => {
            let mut params = json!({"id": id, "url": endpoint});
            if let Some(var) = bearer_env {
                let bearer = std::env::var(&var)
                    .map_err(|_| CliError::Failed(format!("--bearer-env {var}: the variable is not set")))?;
                params["bearer"] = json!(bearer);
            }
            let added = client.call("/rpc", "agents/upsert", params).await?;
            print_one(json, &added, &format!("agent {id} registered"));
            return Ok(());
        }
        AgentsCommand::Remove { id } => {
            let removed = client.call("/rpc", "agents/delete", json!({"id": id})).await?;
            print_one(json, &removed, &format!("agent {id} removed"));
            return Ok(());
        }
    };
    if json {
        print_json(&result);
    } else {
        let rows: Vec<Vec<String>> = result.as_array().into_iter().flatten().map(rows).collect();
        out!("{}", render::table(header, &rows));
    }
    Ok(())
}

/// How one item of a list answer becomes a table row.
type RowOf = fn(&Value) -> Vec<String>;

fn agent_row(a: &Value) -> Vec<String> {
    let binding = match (a["upstream"]["protocolBinding"].as_str(), a["upstream"]["protocolVersion"].as_str()) {
        (Some(b), Some(v)) => format!("{b} {v}"),
        _ => "-".to_string(),
    };
    vec![
        render::cell(&a["id"]),
        render::cell(&a["card"]["name"]),
        render::cell(&a["source"]),
        binding,
        render::cell(&a["url"]),
    ]
}

fn health_row(h: &Value) -> Vec<String> {
    ["agentId", "node", "breakerState", "inFlight", "callsTotal", "failuresTotal", "lastSuccessAt", "lastError"]
        .iter()
        .map(|k| render::cell(&h[*k]))
        .collect()
}

fn print_one(json: bool, value: &Value, human: &str) {
    if json {
        print_json(value);
    } else {
        outln!("{human}");
    }
}

fn cluster_text(s: &Value) -> String {
    let mut out = String::new();
    for (label, key) in [
        ("node", "nodeId"),
        ("role", "role"),
        ("term", "term"),
        ("leader", "leader"),
        ("leader api", "leaderApi"),
        ("voters", "voters"),
        ("learners", "learners"),
        ("committed", "committedIndex"),
        ("applied", "appliedIndex"),
        ("snapshot", "snapshotIndex"),
        ("discovery", "strategy"),
    ] {
        out.push_str(&format!("{label:<11} {}\n", render::cell(&s[key])));
    }
    let members: Vec<Vec<String>> = s["gossip"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            ["nodeId", "api", "raft", "live", "ready", "raftState", "version"]
                .iter()
                .map(|k| render::cell(&m[*k]))
                .collect()
        })
        .collect();
    if !members.is_empty() {
        out.push('\n');
        out.push_str(&render::table(&["NODE", "API", "RAFT", "LIVE", "READY", "RAFT STATE", "VERSION"], &members));
    }
    out
}

fn print_task(json: bool, task: &Value) {
    if json {
        print_json(task);
        return;
    }
    let s = a2a::summarize_task(task);
    outln!("task     {}\nstate    {}\ncontext  {}\nupdated  {}", s.task_id, s.state_name(), s.context_id, s.updated);
    if !s.text.is_empty() {
        outln!("\n{}", s.text);
    }
}

fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_json_line(v: &Value) {
    outln!("{v}");
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_either_spelling() {
        assert_eq!(parse_state("completed"), Ok(TaskState::Completed));
        assert_eq!(parse_state("TASK_STATE_WORKING"), Ok(TaskState::Working));
        assert!(parse_state("done").is_err());
    }

    #[test]
    fn a_failed_task_is_a_failed_command() {
        let s = Summary { state: Some(TaskState::Failed), task_id: "t".into(), ..Summary::default() };
        assert_eq!(ended_well(&s).unwrap_err().exit_code(), 1);
        assert!(ended_well(&Summary { state: Some(TaskState::InputRequired), ..Summary::default() }).is_ok());
    }

    #[test]
    fn the_cluster_text_names_the_role_and_members() {
        let s = json!({"nodeId": 1, "role": "leader", "term": 2, "voters": [1], "gossip": [{"nodeId": 1, "api": "a:1", "live": true}]});
        let text = cluster_text(&s);
        assert!(text.contains("role        leader"), "{text}");
        assert!(text.contains("NODE  API"), "{text}");
    }
}
