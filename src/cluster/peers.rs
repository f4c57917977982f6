//! The `--peers` list: every node's id and URL, the same on every node.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::NodeId;
use crate::coordinator::validate;

/// Node ids and their gRPC URLs, in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers(BTreeMap<NodeId, String>);

impl Peers {
    pub fn get(&self, id: NodeId) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.0.iter().map(|(id, url)| (*id, url.as_str()))
    }

    pub fn urls(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Peers {
    type Err = String;

    /// Parses `1=http://host:7401,2=http://host:7402,…`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut peers = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, url) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not ID=URL (e.g. 1=http://10.0.0.1:7400)"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("{id:?} in {item:?} is not a node id (a number)"))?;
            let url = url.trim().trim_end_matches('/');
            validate::url(&format!("the URL of node {id}"), url).map_err(|e| e.to_string())?;
            if peers.insert(id, url.to_owned()).is_some() {
                return Err(format!("node {id} is named twice"));
            }
        }
        if peers.is_empty() {
            return Err("no peers: give ID=URL for every node, comma-separated".into());
        }
        Ok(Peers(peers))
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.iter().map(|(id, url)| format!("{id}={url}")).collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_urls() {
        let peers: Peers = "2=http://b:2, 1=http://a:1/".parse().unwrap();
        assert_eq!(peers.get(1), Some("http://a:1"));
        assert_eq!(peers.to_string(), "1=http://a:1,2=http://b:2");
    }

    #[test]
    fn refuses_what_is_not_a_peer_list() {
        for (text, says) in [
            ("", "no peers"),
            ("1http://a:1", "is not ID=URL"),
            ("x=http://a:1", "is not a node id"),
            ("1=http://a:1,1=http://b:2", "named twice"),
            ("1=ftp://a", "node 1"),
        ] {
            let error = text.parse::<Peers>().unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
