//! A participant resource on the participant's own embedded database: sled, in the
//! [`DurableDb`] its journal uses.
//!
//! Request handlers stage a transaction's [`Work`] in memory; nothing touches the store until
//! it prepares. Prepare checks the work against the committed data and against what other
//! prepared transactions hold ([`Work::Holds`]), records its prepared form in the `prepared`
//! tree — made durable by the journal's forced flush before the YES, same database — and holds
//! what it needs. Commit applies it and drops the prepared entry in one atomic write: apart, a
//! crash between them could apply it twice, or never. Staged work never prepared is discarded
//! at its transaction's deadline. The KV bank and the records participant are two kinds of work
//! on it, as the PostgreSQL bank is work on
//! [`PgResource`](crate::postgres::resource::PgResource).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::time::Instant;

use crate::core::{TxnId, Vote};
use crate::durable::{DurableDb, StorageError, Tree, Writes};
use crate::frame;
use crate::participant::{Resource, ResourceError};
use crate::staging::Staging;

/// A transaction's work on the store: staged by request handlers, checked and recorded at
/// prepare, applied at commit.
pub trait Work: Default + Send + 'static {
    /// The work once prepared, as the `prepared` tree keeps it.
    type Prepared: Message + Default + Clone + Send + 'static;
    /// What prepared transactions hold, kept in memory; rebuilt from the `prepared` tree at
    /// open.
    type Holds: Default + Send + 'static;
    /// The tree of committed data.
    const DATA: &'static str;
    /// Tags the frames of the prepared records.
    const MAGIC: &'static [u8; 2];

    /// Checks the work against the committed `data` and what the others `holds`: its prepared
    /// form, or the reason to vote NO.
    fn prepare(
        self,
        data: &Tree,
        holds: &Self::Holds,
    ) -> Result<Result<Self::Prepared, String>, StorageError>;

    /// Adds work handed over in Commit (in the participant's own format, see
    /// [`Resource::stage_handed`]), checked against the committed `data`: the reason to vote NO
    /// if it is not valid, leaving the work as it was. By default no work is taken this way.
    fn stage_handed(
        &mut self,
        work: &[u8],
        data: &Tree,
    ) -> Result<Result<(), String>, StorageError> {
        let _ = (work, data);
        Ok(Err(crate::participant::TAKES_NO_HANDED_WORK.into()))
    }

    /// Takes what prepared work holds (`held`), or gives it back.
    fn hold(holds: &mut Self::Holds, txn: TxnId, prepared: &Self::Prepared, held: bool);

    /// Stages the writes that apply prepared work to `data`.
    fn apply(
        prepared: &Self::Prepared,
        data: &Tree,
        writes: &mut Writes,
    ) -> Result<(), StorageError>;
}

/// Staging was refused: the transaction is already prepared here and can no longer change.
#[derive(Debug)]
pub struct AlreadyPrepared;

struct Staged<W> {
    work: W,
    expires: Instant,
}

struct Book<W: Work> {
    staged: HashMap<TxnId, Staged<W>>,
    prepared: HashMap<TxnId, W::Prepared>,
    holds: W::Holds,
}

impl<W: Work> Book<W> {
    fn hold(&mut self, txn: TxnId, prepared: W::Prepared) {
        W::hold(&mut self.holds, txn, &prepared, true);
        self.prepared.insert(txn, prepared);
    }

    fn release(&mut self, txn: TxnId) -> Option<W::Prepared> {
        let prepared = self.prepared.remove(&txn)?;
        W::hold(&mut self.holds, txn, &prepared, false);
        Some(prepared)
    }
}

/// The resource: committed data, and the staged and prepared work.
pub struct KvResource<W: Work> {
    db: Arc<DurableDb>,
    data: Tree,
    prepared: Tree,
    book: Mutex<Book<W>>,
}

fn decode<P: Message + Default>(magic: &[u8; 2], value: &[u8]) -> Result<P, StorageError> {
    let corrupt = |what: String| StorageError(format!("corrupt prepared record: {what}"));
    P::decode(frame::open(magic, value).map_err(corrupt)?).map_err(|e| corrupt(e.to_string()))
}

impl<W: Work> KvResource<W> {
    /// Opens the resource in `db`, reloading what was prepared before a restart.
    pub fn open(db: Arc<DurableDb>) -> Result<Self, StorageError> {
        let mut book = Book {
            staged: HashMap::new(),
            prepared: HashMap::new(),
            holds: W::Holds::default(),
        };
        let prepared = db.tree("prepared")?;
        for entry in prepared.iter() {
            let (key, value) = entry?;
            let Ok(id) = <[u8; 16]>::try_from(key.as_ref()) else {
                continue;
            };
            book.hold(TxnId::from_bytes(id), decode(W::MAGIC, &value)?);
        }
        Ok(KvResource {
            data: db.tree(W::DATA)?,
            prepared,
            db,
            book: Mutex::new(book),
        })
    }

    pub fn db(&self) -> &DurableDb {
        &self.db
    }

    /// The committed data.
    pub fn data(&self) -> &Tree {
        &self.data
    }

    /// Reads what prepared transactions hold, and their prepared work.
    pub fn holds<T>(&self, read: impl FnOnce(&W::Holds, &HashMap<TxnId, W::Prepared>) -> T) -> T {
        let book = self.book.lock().expect("lock");
        read(&book.holds, &book.prepared)
    }

    /// Changes the work `txn` stages here (empty at first), to be discarded at `expires` unless
    /// prepared by then.
    pub fn stage_work<T>(
        &self,
        txn: TxnId,
        expires: Instant,
        change: impl FnOnce(&mut W) -> T,
    ) -> Result<T, AlreadyPrepared> {
        let mut book = self.book.lock().expect("lock");
        if book.prepared.contains_key(&txn) {
            return Err(AlreadyPrepared);
        }
        let staged = book.staged.entry(txn).or_insert_with(|| Staged {
            work: W::default(),
            expires,
        });
        staged.expires = staged.expires.max(expires);
        Ok(change(&mut staged.work))
    }

    fn prepare_now(&self, txn: TxnId) -> Result<Vote, StorageError> {
        let mut book = self.book.lock().expect("lock");
        let Some(staged) = book.staged.remove(&txn) else {
            return Ok(Vote::No(
                "nothing is staged here for this transaction (it expired, or was lost in a \
                 restart)"
                    .into(),
            ));
        };
        let prepared = match staged.work.prepare(&self.data, &book.holds)? {
            Ok(prepared) => prepared,
            Err(reason) => return Ok(Vote::No(reason)),
        };
        let record = frame::seal(W::MAGIC, &prepared.encode_to_vec());
        self.prepared.insert(txn.to_bytes(), record)?;
        book.hold(txn, prepared);
        Ok(Vote::Yes)
    }

    fn commit_now(&self, txn: TxnId) -> Result<(), StorageError> {
        let mut book = self.book.lock().expect("lock");
        let Some(prepared) = book.prepared.get(&txn) else {
            return Ok(());
        };
        self.db.write(|w| {
            W::apply(prepared, &self.data, w)?;
            w.remove(&self.prepared, txn.to_bytes());
            Ok::<_, StorageError>(())
        })?;
        book.release(txn);
        Ok(())
    }

    fn abort_now(&self, txn: TxnId) -> Result<(), StorageError> {
        let mut book = self.book.lock().expect("lock");
        book.staged.remove(&txn);
        if book.release(txn).is_some() {
            self.prepared.remove(txn.to_bytes())?;
        }
        Ok(())
    }
}

fn resource_error(e: StorageError) -> ResourceError {
    ResourceError(format!("the participant's storage failed: {e}"))
}

impl<W: Work> Resource for KvResource<W> {
    async fn prepare(&self, txn: TxnId) -> Result<Vote, ResourceError> {
        self.prepare_now(txn).map_err(resource_error)
    }

    async fn stage_handed(&self, txn: TxnId, work: Vec<u8>) -> Result<(), String> {
        let expires = Instant::now() + crate::staging::HANDED_WORK_KEPT_FOR;
        let staged = self.stage_work(txn, expires, |staged| {
            staged.stage_handed(&work, &self.data)
        });
        match staged {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("the participant's storage failed: {e}")),
            Err(AlreadyPrepared) => Err("the transaction is already prepared here".into()),
        }
    }

    async fn commit(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.commit_now(txn).map_err(resource_error)
    }

    async fn abort(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.abort_now(txn).map_err(resource_error)
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        Ok(self.holds(|_, prepared| prepared.keys().copied().collect()))
    }
}

impl<W: Work> Staging for KvResource<W> {
    fn discard_expired(&self, now: Instant) -> usize {
        let mut book = self.book.lock().expect("lock");
        let before = book.staged.len();
        book.staged.retain(|_, staged| staged.expires > now);
        before - book.staged.len()
    }
}
