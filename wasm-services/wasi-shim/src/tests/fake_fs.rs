//! An in-memory file service speaking the file protocol (`atoll_abi::fs`),
//! as the kernel's tests had it: paths to contents, `Stage` pieces held as
//! the FAT service holds them, and switches that lose them.

use atoll_abi::fs::{Entry, Error as FsError, MAX_DATA, MAX_ENTRIES, Request, Response};
use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

/// An in-memory file service speaking the file protocol.
#[derive(Default)]
pub(super) struct FakeFs {
    /// Path (from the root, `/a/b`) to contents; `None` is a directory.
    pub(super) nodes: BTreeMap<String, Option<Vec<u8>>>,
    pub(super) requests: usize,
    /// `Sync` requests seen.
    pub(super) syncs: usize,
    /// The staged pieces held: path, offset, bytes.
    pub(super) staged: Option<(String, u64, Vec<u8>)>,
    /// `Stage` requests seen.
    pub(super) stages: usize,
    /// Drops what is staged before each last piece (as a restart would).
    pub(super) forget_stages: bool,
    /// Drops what is staged before this `Stage` request (counted from 1),
    /// as a restart between pieces would.
    pub(super) forget_before: Option<usize>,
    /// The volume is full: writes answer `NoSpace`.
    pub(super) full: bool,
    /// Answers the request after this many more with this error.
    pub(super) fail_after: Option<(usize, FsError)>,
}

impl FakeFs {
    pub(super) fn new() -> FakeFs {
        let mut fake = FakeFs::default();
        fake.nodes.insert("/".into(), None);
        fake
    }

    pub(super) fn file(mut self, path: &str, data: &[u8]) -> FakeFs {
        self.nodes.insert(path.into(), Some(data.to_vec()));
        self
    }

    pub(super) fn directory(mut self, path: &str) -> FakeFs {
        self.nodes.insert(path.into(), None);
        self
    }

    fn parent(path: &str) -> String {
        match path.rfind('/') {
            Some(0) | None => "/".into(),
            Some(at) => path[..at].into(),
        }
    }

    fn entry(&self, path: &str) -> Result<Entry, FsError> {
        let Some(node) = self.nodes.get(path) else {
            if path != "/" {
                self.parent_is_directory(path)?;
            }
            return Err(FsError::NotFound);
        };
        Ok(Entry {
            name: path.rsplit('/').next().unwrap_or("").into(),
            size: node.as_ref().map_or(0, |data| data.len() as u64),
            directory: node.is_none(),
            modified: 1_700_000_000,
        })
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|key| key.as_str() != "/" && Self::parent(key) == path)
            .cloned()
            .collect()
    }

    fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        if !self.nodes.contains_key(path) {
            self.parent_is_directory(path)?;
            self.nodes.insert(path.into(), Some(Vec::new()));
        }
        let file = self
            .nodes
            .get_mut(path)
            .and_then(Option::as_mut)
            .ok_or(FsError::IsADirectory)?;
        let end = offset as usize + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn parent_is_directory(&self, path: &str) -> Result<(), FsError> {
        match self.nodes.get(&Self::parent(path)) {
            Some(None) => Ok(()),
            Some(Some(_)) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    pub(super) fn serve(&mut self, request: Request) -> Response {
        self.requests += 1;
        if !matches!(request, Request::Stage { .. }) {
            self.staged = None;
        }
        match self.fail_after.take() {
            Some((0, error)) => return Response::Error(error),
            Some((later, error)) => self.fail_after = Some((later - 1, error)),
            None => {}
        }
        if self.full && matches!(request, Request::Write { .. } | Request::Stage { .. }) {
            return Response::Error(FsError::NoSpace);
        }
        match self.answer(request) {
            Ok(response) => response,
            Err(error) => Response::Error(error),
        }
    }

    fn answer(&mut self, request: Request) -> Result<Response, FsError> {
        Ok(match request {
            Request::Open { path } => Response::Entry(self.entry(&path)?),
            Request::OpenFile {
                path,
                create,
                exclusive,
                truncate,
            } => {
                match self.nodes.get_mut(&path) {
                    Some(_) if create && exclusive => return Err(FsError::Exists),
                    Some(None) if create || truncate => return Err(FsError::IsADirectory),
                    Some(Some(data)) if truncate => data.clear(),
                    Some(_) => {}
                    None if create => {
                        self.parent_is_directory(&path)?;
                        self.nodes.insert(path.clone(), Some(Vec::new()));
                    }
                    None => return Err(FsError::NotFound),
                }
                Response::Entry(self.entry(&path)?)
            }
            Request::List { path, start } => {
                if self.entry(&path)?.directory {
                    let children = self.children(&path);
                    let entries: Vec<Entry> = children
                        .iter()
                        .skip(start as usize)
                        .take(MAX_ENTRIES as usize)
                        .map(|child| self.entry(child))
                        .collect::<Result<_, _>>()?;
                    let more = start as usize + entries.len() < children.len();
                    Response::Entries { entries, more }
                } else {
                    return Err(FsError::NotADirectory);
                }
            }
            Request::Read { path, offset, len } => {
                let data = self
                    .nodes
                    .get(&path)
                    .ok_or(FsError::NotFound)?
                    .as_ref()
                    .ok_or(FsError::IsADirectory)?;
                assert!(len <= MAX_DATA);
                let start = (offset as usize).min(data.len());
                let end = (start + len as usize).min(data.len());
                Response::Data(data[start..end].to_vec())
            }
            Request::Write { path, offset, data } => {
                assert!(data.len() <= MAX_DATA as usize);
                self.write_at(&path, offset, &data)?;
                Response::Written(data.len() as u32)
            }
            Request::Stage {
                path,
                offset,
                data,
                last,
            } => {
                assert!(data.len() <= MAX_DATA as usize);
                self.stages += 1;
                if last && self.forget_stages || self.forget_before == Some(self.stages) {
                    self.staged = None;
                }
                let follows = self.staged.as_ref().is_some_and(|(held, start, bytes)| {
                    *held == path && start + bytes.len() as u64 == offset
                });
                let (start, mut bytes) = match self.staged.take() {
                    Some((_, start, bytes)) if follows => (start, bytes),
                    _ if last => return Err(FsError::NotStaged),
                    _ => (offset, Vec::new()),
                };
                bytes.extend_from_slice(&data);
                if last {
                    self.write_at(&path, start, &bytes)?;
                    Response::Written(bytes.len() as u32)
                } else {
                    self.staged = Some((path, start, bytes));
                    Response::Written(data.len() as u32)
                }
            }
            Request::Create { path } => {
                if self.nodes.contains_key(&path) {
                    return Err(FsError::Exists);
                }
                self.nodes.insert(path, Some(Vec::new()));
                Response::Done
            }
            Request::Remove { path } => match self.nodes.get(&path) {
                None => return Err(FsError::NotFound),
                Some(None) => return Err(FsError::IsADirectory),
                Some(Some(_)) => {
                    self.nodes.remove(&path);
                    Response::Done
                }
            },
            Request::CreateDirectory { path } => {
                if self.nodes.contains_key(&path) {
                    return Err(FsError::Exists);
                }
                self.parent_is_directory(&path)?;
                self.nodes.insert(path, None);
                Response::Done
            }
            Request::RemoveDirectory { path } => match self.nodes.get(&path) {
                None => return Err(FsError::NotFound),
                Some(Some(_)) => return Err(FsError::NotADirectory),
                Some(None) if !self.children(&path).is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                Some(None) => {
                    self.nodes.remove(&path);
                    Response::Done
                }
            },
            Request::Rename { from, to } => {
                let node = self.nodes.remove(&from).ok_or(FsError::NotFound)?;
                self.nodes.insert(to, node);
                Response::Done
            }
            Request::SetSize { path, size } => {
                let file = self
                    .nodes
                    .get_mut(&path)
                    .ok_or(FsError::NotFound)?
                    .as_mut()
                    .ok_or(FsError::IsADirectory)?;
                file.resize(size as usize, 0);
                Response::Done
            }
            Request::Sync => {
                self.syncs += 1;
                Response::Done
            }
        })
    }
}
