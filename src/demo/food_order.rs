//! `verdict demo --scenario food-order`: one food order placed atomically across four services,
//! each with a store of its own, each a Verdict participant:
//!
//! - **order** (`verdict participant records`, embedded KV): the order record, under its id;
//! - **payment** (the PostgreSQL bank, `CHECK (balance >= 0)`; the KV bank where no PostgreSQL is
//!   given): the customer's balance;
//! - **restaurant** (the Python participant, dishes in stock in SQLite; the KV bank where that
//!   Python is not set up): a dish is an account whose balance is its stock;
//! - **delivery** (records, embedded KV): couriers' assignments, at most one order per courier.
//!
//! One `PlaceOrder` is one Verdict transaction. The scenario: a normal order; a sold-out dish; no
//! courier free; the payment service SIGKILLed after voting YES; the coordinator SIGKILLed after
//! its decision. The release binary has no crash points, so the kills land at their protocol
//! points by holding the delivery service's traffic in a [`FaultProxy`]: its vote (so nothing is
//! decided while payment dies), or the decision sent to it (so the coordinator dies with phase 2
//! undelivered).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::Channel;

use crate::chaos::cluster::Node;
use crate::chaos::proxy::{FaultProxy, Faults};
use crate::client::Client;
use crate::core::{Outcome, TxnId};
use crate::proto::bank_client::BankClient;
use crate::proto::records_client::RecordsClient;
use crate::proto::{self, ApplyRequest, GetBalanceRequest, InsertRequest, OpenAccountRequest};

/// How the demo runs.
#[derive(Clone, Debug, Default)]
pub struct FoodOrderOptions {
    /// A PostgreSQL server for the payment service (any database on it: the demo creates one of
    /// its own); without it, payment is the KV bank.
    pub pg_dsn: Option<String>,
    /// A Python with `examples/python-participant/requirements.txt` installed, for the
    /// restaurant; without it, the venv `setup.sh` makes is looked for, then the KV bank is used.
    pub python: Option<PathBuf>,
    /// Keeps every service's data (and the PostgreSQL database) here for inspection, instead of
    /// a temporary directory removed at the end.
    pub data_dir: Option<PathBuf>,
}

const CUSTOMER: &str = "alice";
const OPENING_BALANCE: i64 = 100;
/// Dish, price, stock at opening.
const MENU: [(&str, i64, i64); 3] = [
    ("margherita", 12, 3),
    ("lasagna", 15, 2),
    ("tiramisu", 6, 0),
];
/// Zone, its couriers.
const COURIERS: [(&str, &[&str]); 2] =
    [("north", &["north-1"]), ("south", &["south-1", "south-2"])];
/// How long a step may wait for the stores to show its outcome.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Order {
    id: &'static str,
    dish: &'static str,
    zone: &'static str,
}

const ORDERS: [Order; 5] = [
    Order {
        id: "order-1",
        dish: "margherita",
        zone: "north",
    },
    Order {
        id: "order-2",
        dish: "tiramisu",
        zone: "south",
    },
    Order {
        id: "order-3",
        dish: "margherita",
        zone: "north",
    },
    Order {
        id: "order-4",
        dish: "lasagna",
        zone: "south",
    },
    Order {
        id: "order-5",
        dish: "margherita",
        zone: "south",
    },
];

/// Runs the scenario on processes of its own, printing each step; fails unless every store
/// agrees at the end.
pub async fn run(options: FoodOrderOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the verdict binary")?;
    let temporary = options.data_dir.is_none();
    let dir = options.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("verdict-food-order-{}", std::process::id()))
    });
    let payment_db = match &options.pg_dsn {
        Some(dsn) => PaymentDb::create(dsn).await,
        None => Err(anyhow::anyhow!(
            "no PostgreSQL server was given (--pg-dsn or VERDICT_PG_DSN)"
        )),
    };
    let payment_db = match payment_db {
        Ok(db) => Some(db),
        Err(why) => {
            println!("payment: {why:#}\n         so it runs as the embedded KV bank instead\n");
            None
        }
    };
    let mut town = Town::start(&exe, &dir, &options, payment_db.as_ref()).await?;
    let result = scenario(&mut town).await;
    let stopped = town.stop().await;
    if let Some(db) = payment_db.filter(|_| temporary && result.is_ok()) {
        db.drop_it().await?;
    }
    if temporary && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("\nevery service's data and log is in {}", dir.display());
    }
    result.and(stopped)
}

/// The coordinator and the four services, and the application's clients of them.
struct Town {
    coordinator: Node,
    order: Node,
    payment: Node,
    restaurant: Node,
    delivery: Node,
    /// In front of delivery: the coordinator reaches it only through here.
    delivery_link: FaultProxy,
    client: Client,
    payment_db: Option<PaymentDb>,
}

/// The Python participant for the restaurant: the interpreter and the script, or why not.
fn python_restaurant(options: &FoodOrderOptions) -> anyhow::Result<(PathBuf, PathBuf)> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-participant");
    let script = [
        "examples/python-participant",
        here.to_str().unwrap_or_default(),
    ]
    .iter()
    .map(|dir| Path::new(dir).join("participant.py"))
    .find(|script| script.exists())
    .context("examples/python-participant/participant.py is not here (run from the repository)")?;
    anyhow::ensure!(
        script.with_file_name("gen").exists(),
        "its gRPC stubs are not generated: run examples/python-participant/setup.sh"
    );
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")));
    let venv = cache.map(|cache| cache.join("verdict/python-participant-venv/bin/python"));
    let python = options
        .python
        .clone()
        .or(venv.filter(|python| python.exists()))
        .context(
            "no Python with its requirements was given (--python or VERDICT_PYTHON), and \
                  examples/python-participant/setup.sh has not made its venv",
        )?;
    Ok((python, script))
}

fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
    list.iter().map(Into::into).collect()
}

impl Town {
    async fn start(
        exe: &Path,
        dir: &Path,
        options: &FoodOrderOptions,
        payment_db: Option<&PaymentDb>,
    ) -> anyhow::Result<Town> {
        let mut coordinator = Node::new("coordinator", exe, dir, args(&["serve"]));
        coordinator.start().await?;
        let url = coordinator.url();
        let joined = |kind: &str, name: &str| {
            args(&["participant", kind, "--name", name, "--coordinator", &url])
        };

        let mut order = Node::new(
            "order",
            exe,
            dir,
            [joined("records", "order"), args(&["--item", "order"])].concat(),
        );
        let payment_args = match payment_db {
            Some(db) => [joined("postgres", "payment"), args(&["--dsn", &db.dsn])].concat(),
            None => joined("kv", "payment"),
        };
        let mut payment = Node::new("payment", exe, dir, payment_args);
        let mut restaurant = match python_restaurant(options) {
            Ok((python, script)) => {
                let script = script.display().to_string();
                let list = [
                    &script,
                    "--name",
                    "restaurant",
                    "--coordinator",
                    &url,
                    "--shortage",
                    "{account} is sold out",
                ];
                Node::new("restaurant", &python, dir, args(&list))
            }
            Err(why) => {
                println!("restaurant: the Python participant cannot run: {why:#}\n            so it runs as the embedded KV bank instead\n");
                Node::new("restaurant", exe, dir, joined("kv", "restaurant"))
            }
        };
        let delivery_link = FaultProxy::bind().await?;
        let delivery_args = [
            joined("records", "delivery"),
            args(&["--item", "courier", "--advertise-url", &delivery_link.url()]),
        ];
        let mut delivery = Node::new("delivery", exe, dir, delivery_args.concat());
        for node in [&mut order, &mut payment, &mut restaurant, &mut delivery] {
            node.start().await?;
        }
        delivery_link.set_target(delivery.addr());
        let town = Town {
            client: Client::new(&url, Duration::from_secs(10))?,
            coordinator,
            order,
            payment,
            restaurant,
            delivery,
            delivery_link,
            payment_db: payment_db.cloned(),
        };
        town.open().await?;
        Ok(town)
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        for node in [
            &mut self.order,
            &mut self.payment,
            &mut self.restaurant,
            &mut self.delivery,
            &mut self.coordinator,
        ] {
            node.stop()
                .await
                .with_context(|| format!("stopping {}", node.name))?;
        }
        Ok(())
    }

    fn bank(node: &Node) -> BankClient<Channel> {
        BankClient::new(node.channel())
    }

    fn records(node: &Node) -> RecordsClient<Channel> {
        RecordsClient::new(node.channel())
    }

    /// Opens the customer's account and the restaurant's menu.
    async fn open(&self) -> anyhow::Result<()> {
        let open = |account: &str, balance| OpenAccountRequest {
            account: account.into(),
            balance,
        };
        Self::bank(&self.payment)
            .open_account(open(CUSTOMER, OPENING_BALANCE))
            .await?;
        for (dish, _, stock) in MENU {
            Self::bank(&self.restaurant)
                .open_account(open(dish, stock))
                .await?;
        }
        println!("coordinator  {}", self.coordinator.url());
        for node in [&self.order, &self.payment, &self.restaurant, &self.delivery] {
            println!("{:<12} {}", node.name, node.url());
        }
        println!("\n{CUSTOMER} has {OPENING_BALANCE}; the menu: {}", menu());
        println!("couriers: {}\n", couriers());
        print!("{}", self.settled(None).await?);
        Ok(())
    }

    /// PlaceOrder, up to the commit: begins the transaction and has each service stage its
    /// part (each enlists itself).
    async fn stage(&self, order: &Order) -> anyhow::Result<TxnId> {
        let txn = self.client.begin(None).await?.txn_id;
        let id = txn.to_string();
        let price = price(order.dish)?;
        let record = InsertRequest {
            txn_id: id.clone(),
            keys: vec![order.id.into()],
            value: format!("{CUSTOMER}, {}, to {}", order.dish, order.zone),
        };
        Self::records(&self.order)
            .insert(record)
            .await
            .context("order")?;
        let charge = ApplyRequest {
            txn_id: id.clone(),
            account: CUSTOMER.into(),
            delta: -price,
            deadline_unix_ms: 0,
        };
        Self::bank(&self.payment)
            .apply(charge)
            .await
            .context("payment")?;
        let dish = ApplyRequest {
            txn_id: id.clone(),
            account: order.dish.into(),
            delta: -1,
            deadline_unix_ms: 0,
        };
        Self::bank(&self.restaurant)
            .apply(dish)
            .await
            .context("restaurant")?;
        let courier = InsertRequest {
            txn_id: id,
            keys: couriers_of(order.zone)
                .iter()
                .map(|c| c.to_string())
                .collect(),
            value: order.id.into(),
        };
        Self::records(&self.delivery)
            .insert(courier)
            .await
            .context("delivery")?;
        Ok(txn)
    }

    /// The whole of PlaceOrder: staged, committed, and settled in every store.
    async fn place(&self, order: &Order) -> anyhow::Result<(TxnId, Outcome, String)> {
        let txn = self.stage(order).await?;
        let (outcome, reason) = self.client.commit_and_wait(txn).await?;
        Ok((txn, outcome, reason))
    }

    /// Stages `order` and commits it in the background with delivery's answers held back by
    /// its proxy, so that nothing is decided until the step lets them through.
    async fn commit_with_delivery_held(
        &self,
        order: &Order,
    ) -> anyhow::Result<(TxnId, Committing)> {
        self.delivery_link.set(Faults {
            stall_backward: true,
            ..Faults::default()
        });
        let txn = self.stage(order).await?;
        let client = self.client.clone();
        Ok((txn, tokio::spawn(async move { client.commit(txn).await })))
    }

    /// The vote the coordinator has from participant `name` in `txn`.
    async fn vote(&self, txn: TxnId, name: &str) -> anyhow::Result<proto::Vote> {
        let view = self.client.get(txn).await?;
        let participant = view
            .participants
            .iter()
            .find(|p| p.participant.as_ref().is_some_and(|p| p.name == name));
        Ok(participant.map_or(proto::Vote::Unspecified, |p| p.vote()))
    }

    /// Whether delivery has prepared `txn` (its courier held, pending).
    async fn delivery_prepared(&self, txn: TxnId) -> anyhow::Result<bool> {
        let records = self.records_of(&self.delivery).await?;
        Ok(records
            .iter()
            .any(|r| r.pending && r.txn_id == txn.to_string()))
    }

    async fn records_of(&self, node: &Node) -> anyhow::Result<Vec<proto::Record>> {
        let request = proto::ListRecordsRequest {};
        Ok(Self::records(node)
            .list_records(request)
            .await?
            .into_inner()
            .records)
    }

    async fn balance(&self, node: &Node, account: &str) -> anyhow::Result<(i64, i64)> {
        let request = GetBalanceRequest {
            account: account.into(),
        };
        let answer = Self::bank(node).get_balance(request).await?.into_inner();
        Ok((answer.balance, answer.held))
    }

    /// What each store holds now, as the services report it (`down` for one that is).
    async fn stores(&self) -> anyhow::Result<Stores> {
        let mut stock = Vec::new();
        for (dish, _, _) in MENU {
            stock.push((dish, self.balance(&self.restaurant, dish).await?));
        }
        Ok(Stores {
            orders: self.records_of(&self.order).await?,
            balance: self.balance(&self.payment, CUSTOMER).await.ok(),
            stock,
            couriers: self.records_of(&self.delivery).await?,
        })
    }

    /// Waits until every store is at rest — nothing prepared or held anywhere — and shows
    /// `placed`, if given; returns what they hold then.
    async fn settled(&self, placed: Option<&Order>) -> anyhow::Result<Stores> {
        let what = placed.map_or("every store to be at rest".into(), |o| {
            format!("{} in every store", o.id)
        });
        until(&what, || async {
            let stores = self.stores().await?;
            let done = stores.at_rest() && placed.is_none_or(|order| stores.show(order));
            Ok(done.then_some(stores))
        })
        .await
    }
}

/// A commit under way in the background.
type Committing = tokio::task::JoinHandle<Result<(Outcome, String), tonic::Status>>;

/// Polls `condition` every 20 ms until it gives a value, up to [`SETTLE_TIMEOUT`]; an error
/// counts as not yet (a service restarting).
async fn until<T, F: std::future::Future<Output = anyhow::Result<Option<T>>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let started = tokio::time::Instant::now();
    loop {
        if let Ok(Some(value)) = condition().await {
            return Ok(value);
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!("waited {SETTLE_TIMEOUT:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn price(dish: &str) -> anyhow::Result<i64> {
    MENU.iter()
        .find(|(name, _, _)| *name == dish)
        .map(|(_, price, _)| *price)
        .with_context(|| format!("{dish} is not on the menu"))
}

fn couriers_of(zone: &str) -> &'static [&'static str] {
    COURIERS
        .iter()
        .find(|(z, _)| *z == zone)
        .map_or(&[], |(_, c)| c)
}

fn menu() -> String {
    let dishes = MENU
        .iter()
        .map(|(dish, price, stock)| format!("{dish} {price} ({stock} in stock)"));
    dishes.collect::<Vec<_>>().join(", ")
}

fn couriers() -> String {
    let zones = COURIERS
        .iter()
        .map(|(zone, couriers)| format!("{} in {zone}", couriers.join(" and ")));
    zones.collect::<Vec<_>>().join(", ")
}

async fn scenario(town: &mut Town) -> anyhow::Result<()> {
    step(1, "a normal order", &ORDERS[0]);
    let (txn, outcome, reason) = town.place(&ORDERS[0]).await?;
    expect(txn, outcome, &reason, Outcome::Committed, "")?;
    print!("{}", town.settled(Some(&ORDERS[0])).await?);

    step(2, "a dish that is sold out", &ORDERS[1]);
    let (txn, outcome, reason) = town.place(&ORDERS[1]).await?;
    expect(txn, outcome, &reason, Outcome::Aborted, ORDERS[1].dish)?;
    print!("{}", town.settled(None).await?);

    step(3, "no courier free in the zone", &ORDERS[2]);
    let (txn, outcome, reason) = town.place(&ORDERS[2]).await?;
    expect(txn, outcome, &reason, Outcome::Aborted, "courier")?;
    print!("{}", town.settled(None).await?);

    payment_killed_after_voting_yes(town, &ORDERS[3]).await?;
    coordinator_killed_after_deciding(town, &ORDERS[4]).await?;

    let stores = town.stores().await?;
    stores.agree(
        &[&ORDERS[0], &ORDERS[3], &ORDERS[4]],
        &[&ORDERS[1], &ORDERS[2]],
    )?;
    println!(
        "\nevery store agrees: {}, {} and {} placed in all four; {} and {} left no trace in any",
        ORDERS[0].id, ORDERS[3].id, ORDERS[4].id, ORDERS[1].id, ORDERS[2].id
    );
    Ok(())
}

fn step(n: usize, title: &str, order: &Order) {
    let price = price(order.dish).unwrap_or_default();
    println!(
        "\n{n}. {title}: {} — {CUSTOMER} orders {} ({price}) to {}",
        order.id, order.dish, order.zone
    );
}

/// Prints the outcome; fails unless it is `wanted` with a reason containing `because`.
fn expect(
    txn: TxnId,
    outcome: Outcome,
    reason: &str,
    wanted: Outcome,
    because: &str,
) -> anyhow::Result<()> {
    let why = match reason.is_empty() {
        true => String::new(),
        false => format!(": {reason}"),
    };
    let said = match outcome {
        Outcome::Committed => "COMMITTED",
        Outcome::Aborted => "ABORTED",
    };
    println!("   {said}{why}\n   txn {txn}");
    anyhow::ensure!(
        outcome == wanted && reason.contains(because),
        "expected {wanted:?} ({because}), got {outcome:?}{why}"
    );
    Ok(())
}

async fn payment_killed_after_voting_yes(town: &mut Town, order: &Order) -> anyhow::Result<()> {
    step(4, "the payment service dies after voting YES", order);
    // Nothing is decided while payment dies.
    let (txn, commit) = town.commit_with_delivery_held(order).await?;
    let voted =
        || async { Ok((town.vote(txn, "payment").await? == proto::Vote::Yes).then_some(())) };
    until("payment's YES", voted).await?;
    town.payment.kill().await?;
    println!("   payment voted YES, then was SIGKILLed before it heard the decision");
    if let Some(db) = &town.payment_db {
        let held = db.prepared().await?;
        println!(
            "   its PostgreSQL keeps the charge prepared: {}",
            held.join(", ")
        );
    }
    town.delivery_link.heal();
    let (outcome, reason) = commit.await??;
    expect(txn, outcome, &reason, Outcome::Committed, "")?;
    print!("{}", town.stores().await?);
    town.payment.start().await?;
    println!("   payment restarted: it finds the charge still prepared and commits it, as decided");
    print!("{}", town.settled(Some(order)).await?);
    Ok(())
}

async fn coordinator_killed_after_deciding(town: &mut Town, order: &Order) -> anyhow::Result<()> {
    step(5, "the coordinator dies right after its decision", order);
    let (txn, commit) = town.commit_with_delivery_held(order).await?;
    let prepared = || async { Ok(town.delivery_prepared(txn).await?.then_some(())) };
    until("delivery to prepare", prepared).await?;
    // Its YES goes out now; nothing more gets to it: the decision will not reach delivery.
    town.delivery_link.set(Faults {
        stall_forward: true,
        ..Faults::default()
    });
    let (outcome, reason) = commit.await??;
    expect(txn, outcome, &reason, Outcome::Committed, "")?;
    town.coordinator.kill().await?;
    // The decision held for delivery died with the coordinator's connection.
    town.delivery_link.reset_connections();
    town.delivery_link.heal();
    println!("   the decision was durable and answered; the coordinator was SIGKILLed before delivery heard it");
    print!("{}", town.stores().await?);
    town.coordinator.start().await?;
    println!("   coordinator restarted: it reads its decision log and delivers the COMMIT again");
    print!("{}", town.settled(Some(order)).await?);
    Ok(())
}

/// The four stores as their services report them.
struct Stores {
    orders: Vec<proto::Record>,
    /// The customer's balance and what prepared transactions hold of it; `None` while payment is
    /// down.
    balance: Option<(i64, i64)>,
    /// Dish → (stock, held).
    stock: Vec<(&'static str, (i64, i64))>,
    couriers: Vec<proto::Record>,
}

fn committed<'a>(records: &'a [proto::Record], key: &str) -> Option<&'a str> {
    records
        .iter()
        .find(|r| r.key == key && !r.pending)
        .map(|r| r.value.as_str())
}

impl Stores {
    /// Whether every service is up, and nothing is prepared or held in any store.
    fn at_rest(&self) -> bool {
        self.balance.is_some_and(|(_, held)| held == 0)
            && self.stock.iter().all(|(_, (_, held))| *held == 0)
            && self.orders.iter().chain(&self.couriers).all(|r| !r.pending)
    }

    /// Whether the order and delivery stores show `order` committed.
    fn show(&self, order: &Order) -> bool {
        let courier = self
            .couriers
            .iter()
            .any(|r| r.value == order.id && !r.pending);
        committed(&self.orders, order.id).is_some() && courier
    }

    /// Fails unless the stores hold exactly `placed`, and nothing of `refused`.
    fn agree(&self, placed: &[&Order], refused: &[&Order]) -> anyhow::Result<()> {
        let charged: i64 = placed
            .iter()
            .map(|o| price(o.dish))
            .sum::<anyhow::Result<i64>>()?;
        anyhow::ensure!(
            self.balance == Some((OPENING_BALANCE - charged, 0)),
            "payment holds {:?}, expected {} charged",
            self.balance,
            charged
        );
        for (dish, _, opening) in MENU {
            let taken = placed.iter().filter(|o| o.dish == dish).count() as i64;
            let now = self.stock.iter().find(|(d, _)| *d == dish).map(|(_, s)| *s);
            anyhow::ensure!(
                now == Some((opening - taken, 0)),
                "{dish}: stock {now:?}, expected {}",
                opening - taken
            );
        }
        for order in placed {
            anyhow::ensure!(
                committed(&self.orders, order.id).is_some(),
                "{} has no order record",
                order.id
            );
            anyhow::ensure!(
                self.couriers.iter().any(|r| r.value == order.id),
                "{} has no courier",
                order.id
            );
        }
        for order in refused {
            let traces = self.orders.iter().filter(|r| r.key == order.id).count()
                + self.couriers.iter().filter(|r| r.value == order.id).count();
            anyhow::ensure!(traces == 0, "{} left a record behind", order.id);
        }
        Ok(())
    }
}

fn listed(records: &[proto::Record]) -> String {
    if records.is_empty() {
        return "—".into();
    }
    let each = records.iter().map(|r| match r.pending {
        true => format!("{}: {} (prepared, in doubt)", r.key, r.value),
        false => format!("{}: {}", r.key, r.value),
    });
    each.collect::<Vec<_>>().join(" · ")
}

fn held(held: i64) -> String {
    match held {
        0 => String::new(),
        held => format!(" ({held} held)"),
    }
}

impl std::fmt::Display for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let payment = match self.balance {
            Some((balance, held_now)) => format!("{CUSTOMER} {balance}{}", held(held_now)),
            None => "down".into(),
        };
        let stock = self
            .stock
            .iter()
            .map(|(dish, (stock, held_now))| format!("{dish} {stock}{}", held(*held_now)));
        writeln!(f, "   order        {}", listed(&self.orders))?;
        writeln!(f, "   payment      {payment}")?;
        writeln!(
            f,
            "   restaurant   {}",
            stock.collect::<Vec<_>>().join(" · ")
        )?;
        writeln!(f, "   delivery     {}", listed(&self.couriers))
    }
}

/// The payment service's own PostgreSQL database, made for this run.
#[derive(Clone)]
struct PaymentDb {
    server: String,
    name: String,
    /// The DSN of the database itself.
    dsn: String,
}

/// `dsn` with its database replaced by `database`.
fn in_database(dsn: &str, database: &str) -> String {
    match dsn.split_once("://") {
        Some((scheme, rest)) => {
            let (location, query) = rest
                .split_once('?')
                .map_or((rest, None), |(l, q)| (l, Some(q)));
            let server = location.split('/').next().unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{server}/{database}{query}")
        }
        None => format!("{dsn} dbname={database}"),
    }
}

async fn connect(dsn: &str) -> anyhow::Result<tokio_postgres::Client> {
    let connect = tokio_postgres::connect(dsn, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .context("it did not answer within 5 s")??;
    tokio::spawn(connection);
    Ok(client)
}

impl PaymentDb {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("verdict_food_order_{}", uuid::Uuid::now_v7().simple());
        let sql = connect(server)
            .await
            .context("cannot reach the PostgreSQL server given")?;
        sql.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("cannot create the payment service's database there")?;
        println!("payment database: {name}");
        Ok(PaymentDb {
            server: server.into(),
            dsn: in_database(server, &name),
            name,
        })
    }

    /// The global ids of the transactions prepared in it.
    async fn prepared(&self) -> anyhow::Result<Vec<String>> {
        let query = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()";
        let rows = connect(&self.dsn).await?.query(query, &[]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        let sql = connect(&self.server).await?;
        sql.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_is_pointed_at_another_database_in_either_form() {
        assert_eq!(
            in_database("host=db port=5432 dbname=postgres", "shop"),
            "host=db port=5432 dbname=postgres dbname=shop"
        );
        assert_eq!(
            in_database("postgres://u@db:5432/postgres?sslmode=disable", "shop"),
            "postgres://u@db:5432/shop?sslmode=disable"
        );
        assert_eq!(
            in_database("postgresql://db", "shop"),
            "postgresql://db/shop"
        );
    }
}
