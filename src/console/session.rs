//! Signing in to the console when the coordinator authenticates callers (`serve --auth`): an
//! operator gives their own bearer token (listed in the identities file, or a JWT the file
//! trusts) once, and the console calls the coordinator as them from then on — so the
//! coordinator holds each operator to their own roles, and a resolution by hand names who
//! made it. The token is checked by asking the coordinator for its counts (an operator's
//! call); the browser keeps only a random session id, in a cookie scripts cannot read and
//! other sites cannot send.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::COOKIE;
use axum::http::HeaderMap;

use crate::client::Client;

/// The cookie holding the session id.
pub const COOKIE_NAME: &str = "verdict_console";

/// How long a session lasts after signing in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; signing in beyond it first forgets the expired ones, then refuses.
const MOST: usize = 10_000;

/// The signed-in operators, by session id.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

struct Session {
    /// The coordinator client presenting the operator's token.
    client: Client,
    expires: Instant,
}

impl Sessions {
    /// Starts a session calling with `client`; its id, or `None` when too many are open.
    pub fn open(&self, client: Client) -> Option<String> {
        let mut sessions = self.by_id.lock().expect("lock");
        if sessions.len() >= MOST {
            let now = Instant::now();
            sessions.retain(|_, session| session.expires > now);
            if sessions.len() >= MOST {
                return None;
            }
        }
        let id = new_id();
        let expires = Instant::now() + LIFETIME;
        sessions.insert(id.clone(), Session { client, expires });
        Some(id)
    }

    /// The client of the session the request's cookie names, if it is open.
    pub fn client(&self, headers: &HeaderMap) -> Option<Client> {
        let id = session_id(headers)?;
        let mut sessions = self.by_id.lock().expect("lock");
        match sessions.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.client.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session the request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.by_id.lock().expect("lock").remove(id);
        }
    }
}

/// A `Set-Cookie` value for session `id` (empty: one that clears it); `Secure` over TLS.
pub fn cookie(id: &str, tls: bool) -> String {
    let max_age = if id.is_empty() { 0 } else { LIFETIME.as_secs() };
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    let cookies = headers.get_all(COOKIE).into_iter();
    let pairs = cookies
        .filter_map(|value| value.to_str().ok())
        .flat_map(|v| v.split(';'));
    pairs
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, id)| id)
}

/// 256 random bits, in hex.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let sessions = Sessions::default();
        let client = Client::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let id = sessions.open(client).unwrap();
        assert_eq!(id.len(), 64);
        let headers = with_cookie(&format!("theme=dark; {COOKIE_NAME}={id}"));
        assert!(sessions.client(&headers).is_some());
        assert!(sessions
            .client(&with_cookie(&format!("{COOKIE_NAME}=guess")))
            .is_none());
        assert!(sessions.client(&HeaderMap::new()).is_none());
        sessions.close(&headers);
        assert!(sessions.client(&headers).is_none());
    }

    #[test]
    fn the_cookie_is_out_of_scripts_reach_and_same_site_only() {
        let set = cookie("abc", true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(set.ends_with("; Secure"), "{set}");
        assert!(cookie("", false).contains("Max-Age=0"));
    }
}
