//! The ZIP of a model's files, written as it is stored: never whole in memory. Files are
//! stored uncompressed (adapters do not compress), so the archive's length is known before a
//! byte is written and it streams into the object store as one `put_stream` of that length.
//!
//! A first pass reads each file to learn its CRC-32, so every local header carries its CRC
//! and sizes (no data descriptors: readers that stream a ZIP rather than seek to its central
//! directory read it too); the second pass writes the archive and checks each file's CRC
//! again. Written here rather than with the `zip` crate, whose writer needs the whole output
//! (or a seekable one) and cannot say the length in advance.

use std::sync::Arc;

use application::ObjectStore;
use bytes::Bytes;
use domain::model::ModelArtifact;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// Bit 11: the names are UTF-8.
const UTF8_NAMES: u16 = 1 << 11;
/// 1980-01-01 00:00, the first moment a ZIP can name (the files' own times are not kept).
const DOS_DATE: u16 = (1 << 5) | 1;
const CHUNK: usize = 64 * 1024;

/// One file of the archive, as the first pass found it.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    key: String,
    size: u32,
    crc: u32,
}

/// The archive's length for files of these names and sizes: each local header and its data,
/// each central directory entry, the end record.
fn archive_length(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| 30 + 46 + 2 * e.name.len() as u64 + u64::from(e.size))
        .sum::<u64>()
        + 22
}

fn local_header(e: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + e.name.len());
    h.extend(LOCAL_HEADER.to_le_bytes());
    h.extend(10u16.to_le_bytes()); // version needed: 1.0 (stored)
    h.extend(UTF8_NAMES.to_le_bytes());
    h.extend(0u16.to_le_bytes()); // stored
    h.extend(0u16.to_le_bytes()); // time
    h.extend(DOS_DATE.to_le_bytes());
    h.extend(e.crc.to_le_bytes());
    h.extend(e.size.to_le_bytes()); // compressed
    h.extend(e.size.to_le_bytes()); // uncompressed
    h.extend((e.name.len() as u16).to_le_bytes());
    h.extend(0u16.to_le_bytes()); // extra
    h.extend(e.name.as_bytes());
    h
}

fn central_entry(e: &Entry, offset: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(46 + e.name.len());
    h.extend(CENTRAL_HEADER.to_le_bytes());
    h.extend(0x031eu16.to_le_bytes()); // made by: Unix, 3.0
    h.extend(10u16.to_le_bytes());
    h.extend(UTF8_NAMES.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(DOS_DATE.to_le_bytes());
    h.extend(e.crc.to_le_bytes());
    h.extend(e.size.to_le_bytes());
    h.extend(e.size.to_le_bytes());
    h.extend((e.name.len() as u16).to_le_bytes());
    h.extend(0u16.to_le_bytes()); // extra
    h.extend(0u16.to_le_bytes()); // comment
    h.extend(0u16.to_le_bytes()); // disk
    h.extend(0u16.to_le_bytes()); // internal attributes
    h.extend((0o100644u32 << 16).to_le_bytes()); // external: a regular file, rw-r--r--
    h.extend(offset.to_le_bytes());
    h.extend(e.name.as_bytes());
    h
}

fn end_record(count: u16, directory_length: u32, directory_offset: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(22);
    h.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(0u16.to_le_bytes());
    h.extend(count.to_le_bytes());
    h.extend(count.to_le_bytes());
    h.extend(directory_length.to_le_bytes());
    h.extend(directory_offset.to_le_bytes());
    h.extend(0u16.to_le_bytes()); // comment
    h
}

async fn open(objects: &dyn ObjectStore, key: &str) -> anyhow::Result<application::ObjectReader> {
    objects
        .read(key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the stored artifact {key} is missing"))
}

/// The next chunk of `reader` (at most `CHUNK` bytes), or `None` at its end.
async fn next_chunk(reader: &mut application::ObjectReader) -> anyhow::Result<Option<Bytes>> {
    let mut buffer = vec![0u8; CHUNK];
    let n = reader.read(&mut buffer).await?;
    if n == 0 {
        return Ok(None);
    }
    buffer.truncate(n);
    Ok(Some(Bytes::from(buffer)))
}

/// The first pass: each file's CRC-32, its length checked against the recorded one.
async fn entries(objects: &dyn ObjectStore, files: &[ModelArtifact]) -> anyhow::Result<Vec<Entry>> {
    if files.len() >= usize::from(u16::MAX) {
        anyhow::bail!(
            "{} files are more than a ZIP without ZIP64 holds",
            files.len()
        );
    }
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let mut crc = crc32fast::Hasher::new();
        let mut reader = open(objects, &file.s3_key).await?;
        let mut length = 0u64;
        while let Some(chunk) = next_chunk(&mut reader).await? {
            crc.update(&chunk);
            length += chunk.len() as u64;
        }
        if length != file.size_bytes {
            anyhow::bail!(
                "{} holds {length} bytes, {} were recorded",
                file.s3_key,
                file.size_bytes
            );
        }
        out.push(Entry {
            name: file.name.clone(),
            key: file.s3_key.clone(),
            size: u32::try_from(length).map_err(|_| {
                anyhow::anyhow!("{} is larger than a ZIP without ZIP64 holds", file.name)
            })?,
            crc: crc.finalize(),
        });
    }
    if archive_length(&out) > u64::from(u32::MAX) {
        anyhow::bail!("the files are larger together than a ZIP without ZIP64 holds");
    }
    Ok(out)
}

/// The second pass: the archive's bytes into `out`, chunk by chunk, each file's CRC checked
/// again. Answers the archive's sha256.
async fn write(
    objects: &dyn ObjectStore,
    entries: &[Entry],
    out: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> anyhow::Result<String> {
    let mut sha = Sha256::new();
    let mut send = |bytes: Bytes| {
        sha.update(&bytes);
        let out = out.clone();
        async move {
            out.send(Ok(bytes))
                .await
                .map_err(|_| anyhow::anyhow!("the store stopped reading the archive"))
        }
    };
    let mut offset = 0u32;
    let mut directory = Vec::new();
    for e in entries {
        directory.extend(central_entry(e, offset));
        let header = local_header(e);
        offset += header.len() as u32;
        send(Bytes::from(header)).await?;
        let mut reader = open(objects, &e.key).await?;
        let mut crc = crc32fast::Hasher::new();
        while let Some(chunk) = next_chunk(&mut reader).await? {
            crc.update(&chunk);
            offset = offset.saturating_add(chunk.len() as u32);
            send(chunk).await?;
        }
        if crc.finalize() != e.crc {
            anyhow::bail!("{} changed while it was archived", e.key);
        }
    }
    let end = end_record(entries.len() as u16, directory.len() as u32, offset);
    send(Bytes::from(directory)).await?;
    send(Bytes::from(end)).await?;
    Ok(hex::encode(sha.finalize()))
}

/// Stores the ZIP of `files` at `key`, streaming: answers its length and sha256.
pub async fn store(
    objects: Arc<dyn ObjectStore>,
    files: &[ModelArtifact],
    key: &str,
) -> anyhow::Result<(u64, String)> {
    let entries = entries(&*objects, files).await?;
    let length = archive_length(&entries);
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let writer = {
        let objects = objects.clone();
        tokio::spawn(async move { write(&*objects, &entries, tx).await })
    };
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let stored = objects.put_stream(key, Box::pin(body), length).await;
    let sha = writer.await??;
    stored?;
    Ok((length, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `write` would send for these files, built from the same pieces.
    fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut directory = Vec::new();
        for (name, data) in files {
            let e = Entry {
                name: name.to_string(),
                key: String::new(),
                size: data.len() as u32,
                crc: crc32fast::hash(data),
            };
            directory.extend(central_entry(&e, out.len() as u32));
            out.extend(local_header(&e));
            out.extend(*data);
        }
        let end = end_record(files.len() as u16, directory.len() as u32, out.len() as u32);
        out.extend(directory);
        out.extend(end);
        out
    }

    #[test]
    fn the_pieces_make_a_zip_of_the_announced_length_that_readers_open() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let files: [(&str, &[u8]); 3] = [
            ("adapter_model.safetensors", &big),
            ("adapter_config.json", b"{\"r\": 8}"),
            ("tokenizer.json", b""),
        ];
        let bytes = archive_of(&files);
        let entries: Vec<Entry> = files
            .iter()
            .map(|(name, data)| Entry {
                name: name.to_string(),
                key: String::new(),
                size: data.len() as u32,
                crc: 0,
            })
            .collect();
        assert_eq!(bytes.len() as u64, archive_length(&entries));
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).expect("a ZIP");
        assert_eq!(zip.len(), 3);
        for (name, data) in files {
            let mut file = zip.by_name(name).expect(name);
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut read).expect("read (CRC checked)");
            assert_eq!(read, data, "{name}");
        }
    }
}
