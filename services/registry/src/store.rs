//! Every SQL statement of the registry: subjects, versions, schemas, config.
//!
//! Guarantees:
//! - Schema ids come from a Postgres identity column: global, stable, never
//!   reused (not even after a hard delete, which removes the subject's
//!   version rows but never the schema row — an id in an old Kafka record
//!   keeps resolving), and two registry instances over one database never
//!   hand out the same id.
//! - Registration and deletion of a subject run in one transaction holding a
//!   per-subject advisory lock, so concurrent registrations of one schema
//!   under one subject create one version, and version numbers have no
//!   duplicates. Identical schemas under different subjects share one id.
//! - Soft-deleted versions are invisible to reads (unless `deleted=true`)
//!   and to compatibility checks; version numbers keep counting after a
//!   soft delete.

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;

use crate::canonical::{self, ParsedSchema};
use crate::compat::{self, CompatibilityLevel};
use crate::RegistryError;

/// Advisory-lock class for per-subject locks (the second key is `hashtext(subject)`).
const SUBJECT_LOCK_CLASS: i32 = 0x5245_4731; // "REG1"

/// A version of a subject, with its schema.
#[derive(Debug, Clone)]
pub(crate) struct VersionRow {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
    pub schema_type: String,
}

impl VersionRow {
    fn from_row(row: &Row) -> Self {
        VersionRow {
            subject: row.get("subject"),
            version: row.get("version"),
            id: row.get("id"),
            schema: row.get("schema_text"),
            schema_type: row.get("schema_type"),
        }
    }
}

/// A version as given in a URL: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSpec {
    /// `latest` or `-1`.
    Latest,
    /// 1..=2^31-1.
    Number(i32),
}

impl VersionSpec {
    /// Parses a URL version; anything else is a 42202.
    pub(crate) fn parse(s: &str) -> Result<Self, RegistryError> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

/// What the outcome of a registration was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registered {
    pub id: i32,
    pub version: i32,
    /// False when the schema was already a live version of the subject.
    pub created: bool,
}

const SELECT_VERSION: &str =
    "SELECT sv.subject, sv.version, sv.deleted, s.id, s.schema_text, s.schema_type
     FROM registry.subject_versions sv JOIN registry.schemas s ON s.id = sv.schema_id";

async fn lock_subject(client: &impl GenericClient, subject: &str) -> Result<(), RegistryError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&SUBJECT_LOCK_CLASS, &subject],
        )
        .await?;
    Ok(())
}

/// (live versions, all versions including soft-deleted) of a subject.
async fn subject_counts(
    client: &impl GenericClient,
    subject: &str,
) -> Result<(i64, i64), RegistryError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT deleted), count(*)
             FROM registry.subject_versions WHERE subject = $1",
            &[&subject],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

async fn live_versions(
    client: &impl GenericClient,
    subject: &str,
) -> Result<Vec<VersionRow>, RegistryError> {
    let rows = client
        .query(
            &format!(
                "{SELECT_VERSION} WHERE sv.subject = $1 AND NOT sv.deleted ORDER BY sv.version"
            ),
            &[&subject],
        )
        .await?;
    Ok(rows.iter().map(VersionRow::from_row).collect())
}

fn parse_all(rows: &[VersionRow]) -> Result<Vec<(i32, apache_avro::Schema)>, RegistryError> {
    rows.iter()
        .map(|r| Ok((r.version, canonical::parse_stored(&r.schema)?)))
        .collect()
}

/// The level that applies to a subject: its own, else the global one, else BACKWARD.
pub(crate) async fn effective_level(
    client: &impl GenericClient,
    subject: &str,
) -> Result<CompatibilityLevel, RegistryError> {
    if let Some(level) = subject_level(client, subject).await? {
        return Ok(level);
    }
    global_level(client).await
}

/// Registers `parsed` under `subject`, or returns the existing id if it is
/// already a live version there; 409 if it breaks the subject's level.
pub(crate) async fn register(
    pool: &Pool,
    subject: &str,
    parsed: &ParsedSchema,
) -> Result<Registered, RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_subject(&tx, subject).await?;

    let existing = tx
        .query_opt(
            "SELECT sv.version, s.id FROM registry.subject_versions sv
             JOIN registry.schemas s ON s.id = sv.schema_id
             WHERE sv.subject = $1 AND NOT sv.deleted
               AND s.fingerprint = sha256(convert_to($2, 'UTF8')) AND s.canonical = $2
             ORDER BY sv.version DESC LIMIT 1",
            &[&subject, &parsed.canonical],
        )
        .await?;
    if let Some(row) = existing {
        tx.commit().await?;
        return Ok(Registered {
            version: row.get(0),
            id: row.get(1),
            created: false,
        });
    }

    let level = effective_level(&tx, subject).await?;
    if level != CompatibilityLevel::None {
        let previous = parse_all(&live_versions(&tx, subject).await?)?;
        let problems = compat::check(level, &parsed.schema, &previous);
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                details: problems,
            });
        }
    }

    // ON CONFLICT waits for a concurrent transaction inserting the same
    // schema, then the SELECT sees its committed row.
    let inserted = tx
        .query_opt(
            "INSERT INTO registry.schemas (fingerprint, canonical, schema_text, schema_type)
             VALUES (sha256(convert_to($1, 'UTF8')), $1, $2, 'AVRO')
             ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
            &[&parsed.canonical, &parsed.text],
        )
        .await?;
    let id: i32 = match inserted {
        Some(row) => row.get(0),
        None => tx
            .query_one(
                "SELECT id FROM registry.schemas
                 WHERE fingerprint = sha256(convert_to($1, 'UTF8')) AND canonical = $1",
                &[&parsed.canonical],
            )
            .await?
            .get(0),
    };
    let version: i32 = tx
        .query_one(
            "INSERT INTO registry.subject_versions (subject, version, schema_id)
             SELECT $1, COALESCE(max(version), 0) + 1, $2
             FROM registry.subject_versions WHERE subject = $1
             RETURNING version",
            &[&subject, &id],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Registered {
        id,
        version,
        created: true,
    })
}

/// `POST /subjects/{s}`: the version of the subject holding this schema.
pub(crate) async fn lookup(
    pool: &Pool,
    subject: &str,
    parsed: &ParsedSchema,
    include_deleted: bool,
) -> Result<VersionRow, RegistryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "{SELECT_VERSION} WHERE sv.subject = $1 AND (NOT sv.deleted OR $3)
                   AND s.fingerprint = sha256(convert_to($2, 'UTF8')) AND s.canonical = $2
                 ORDER BY sv.deleted, sv.version DESC LIMIT 1"
            ),
            &[&subject, &parsed.canonical, &include_deleted],
        )
        .await?;
    if let Some(row) = row {
        return Ok(VersionRow::from_row(&row));
    }
    let (live, all) = subject_counts(&client, subject).await?;
    if live == 0 && !(include_deleted && all > 0) {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    Err(RegistryError::SchemaNotFound(None))
}

/// A schema by global id: (text, type).
pub(crate) async fn schema_by_id(pool: &Pool, id: i32) -> Result<(String, String), RegistryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT schema_text, schema_type FROM registry.schemas WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or(RegistryError::SchemaNotFound(Some(id.into())))?;
    Ok((row.get(0), row.get(1)))
}

/// The live (subject, version) pairs using a schema id.
pub(crate) async fn versions_of_id(
    pool: &Pool,
    id: i32,
) -> Result<Vec<(String, i32)>, RegistryError> {
    schema_by_id(pool, id).await?;
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT subject, version FROM registry.subject_versions
             WHERE schema_id = $1 AND NOT deleted ORDER BY subject, version",
            &[&id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Subjects with at least one live version (or any version with `include_deleted`).
pub(crate) async fn subjects(
    pool: &Pool,
    include_deleted: bool,
) -> Result<Vec<String>, RegistryError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT subject FROM registry.subject_versions
             WHERE NOT deleted OR $1 ORDER BY subject",
            &[&include_deleted],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The version numbers of a subject; 40401 if it has none.
pub(crate) async fn versions(
    pool: &Pool,
    subject: &str,
    include_deleted: bool,
) -> Result<Vec<i32>, RegistryError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT version FROM registry.subject_versions
             WHERE subject = $1 AND (NOT deleted OR $2) ORDER BY version",
            &[&subject, &include_deleted],
        )
        .await?;
    if rows.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One version of a subject (`latest` = highest visible); 40401/40402.
pub(crate) async fn version(
    pool: &Pool,
    subject: &str,
    spec: VersionSpec,
    include_deleted: bool,
) -> Result<VersionRow, RegistryError> {
    let client = pool.get().await?;
    find_version(&client, subject, spec, include_deleted)
        .await
        .map(|(row, _)| row)
}

/// (row, deleted) of a version; 40401 if the subject has no visible versions.
async fn find_version(
    client: &impl GenericClient,
    subject: &str,
    spec: VersionSpec,
    include_deleted: bool,
) -> Result<(VersionRow, bool), RegistryError> {
    let (live, all) = subject_counts(client, subject).await?;
    if live == 0 && !(include_deleted && all > 0) {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    let row = match spec {
        VersionSpec::Latest => {
            client
                .query_opt(
                    &format!(
                        "{SELECT_VERSION} WHERE sv.subject = $1 AND (NOT sv.deleted OR $2)
                         ORDER BY sv.version DESC LIMIT 1"
                    ),
                    &[&subject, &include_deleted],
                )
                .await?
        }
        VersionSpec::Number(n) => {
            client
                .query_opt(
                    &format!(
                        "{SELECT_VERSION} WHERE sv.subject = $1 AND sv.version = $3
                           AND (NOT sv.deleted OR $2)"
                    ),
                    &[&subject, &include_deleted, &n],
                )
                .await?
        }
    };
    let row = row.ok_or(RegistryError::VersionNotFound(match spec {
        VersionSpec::Number(n) => n,
        VersionSpec::Latest => -1,
    }))?;
    Ok((VersionRow::from_row(&row), row.get("deleted")))
}

/// `DELETE /subjects/{s}`: soft-deletes all live versions, or with
/// `permanent` removes all versions (which must be soft-deleted first).
pub(crate) async fn delete_subject(
    pool: &Pool,
    subject: &str,
    permanent: bool,
) -> Result<Vec<i32>, RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_subject(&tx, subject).await?;
    let (live, all) = subject_counts(&tx, subject).await?;
    if all == 0 {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    let rows = if permanent {
        if live > 0 {
            return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
        }
        tx.execute(
            "DELETE FROM registry.subject_config WHERE subject = $1",
            &[&subject],
        )
        .await?;
        tx.query(
            "DELETE FROM registry.subject_versions WHERE subject = $1 RETURNING version",
            &[&subject],
        )
        .await?
    } else {
        if live == 0 {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
        }
        tx.query(
            "UPDATE registry.subject_versions SET deleted = true
             WHERE subject = $1 AND NOT deleted RETURNING version",
            &[&subject],
        )
        .await?
    };
    tx.commit().await?;
    let mut versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    versions.sort_unstable();
    Ok(versions)
}

/// `DELETE /subjects/{s}/versions/{v}`: soft delete, or with `permanent`
/// removal of a version that was soft-deleted first.
pub(crate) async fn delete_version(
    pool: &Pool,
    subject: &str,
    spec: VersionSpec,
    permanent: bool,
) -> Result<i32, RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_subject(&tx, subject).await?;
    // A numbered version is looked up among deleted ones too, to answer
    // 40406 (already soft-deleted); `latest` means the latest live one
    // unless deleting permanently.
    let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
    let (row, deleted) = find_version(&tx, subject, spec, include_deleted).await?;
    if permanent {
        if !deleted {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_owned(),
                version: row.version,
            });
        }
        tx.execute(
            "DELETE FROM registry.subject_versions WHERE subject = $1 AND version = $2",
            &[&subject, &row.version],
        )
        .await?;
    } else {
        if deleted {
            return Err(RegistryError::VersionSoftDeleted {
                subject: subject.to_owned(),
                version: row.version,
            });
        }
        tx.execute(
            "UPDATE registry.subject_versions SET deleted = true WHERE subject = $1 AND version = $2",
            &[&subject, &row.version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row.version)
}

/// `POST /compatibility/...`: the problems `parsed` has against one version
/// (`Some`) or against what the subject's level requires (`None`). A
/// subject that exists but has no live version is compatible with anything.
pub(crate) async fn compatibility(
    pool: &Pool,
    subject: &str,
    parsed: &ParsedSchema,
    spec: Option<VersionSpec>,
) -> Result<Vec<String>, RegistryError> {
    let client = pool.get().await?;
    let (live, all) = subject_counts(&client, subject).await?;
    if all == 0 {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    let level = effective_level(&client, subject).await?;
    let against = if live == 0 {
        match spec {
            Some(VersionSpec::Number(n)) => return Err(RegistryError::VersionNotFound(n)),
            _ => Vec::new(),
        }
    } else {
        match spec {
            None => live_versions(&client, subject).await?,
            Some(spec) => vec![find_version(&client, subject, spec, false).await?.0],
        }
    };
    if level == CompatibilityLevel::None {
        return Ok(Vec::new());
    }
    Ok(compat::check(level, &parsed.schema, &parse_all(&against)?))
}

/// The global level (BACKWARD when never set).
pub(crate) async fn global_level(
    client: &impl GenericClient,
) -> Result<CompatibilityLevel, RegistryError> {
    let row = client
        .query_opt("SELECT compatibility FROM registry.global_config", &[])
        .await?;
    match row {
        Some(row) => row.get::<_, String>(0).parse(),
        None => Ok(CompatibilityLevel::default()),
    }
}

/// Sets the global level.
pub(crate) async fn set_global_level(
    pool: &Pool,
    level: CompatibilityLevel,
) -> Result<(), RegistryError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO registry.global_config (singleton, compatibility) VALUES (true, $1)
             ON CONFLICT (singleton) DO UPDATE SET compatibility = EXCLUDED.compatibility",
            &[&level.as_str()],
        )
        .await?;
    Ok(())
}

/// Resets the global level to the default; returns the one it had.
pub(crate) async fn delete_global_level(pool: &Pool) -> Result<CompatibilityLevel, RegistryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "DELETE FROM registry.global_config RETURNING compatibility",
            &[],
        )
        .await?;
    match row {
        Some(row) => row.get::<_, String>(0).parse(),
        None => Ok(CompatibilityLevel::default()),
    }
}

/// A subject's own level, if set.
pub(crate) async fn subject_level(
    client: &impl GenericClient,
    subject: &str,
) -> Result<Option<CompatibilityLevel>, RegistryError> {
    let row = client
        .query_opt(
            "SELECT compatibility FROM registry.subject_config WHERE subject = $1",
            &[&subject],
        )
        .await?;
    row.map(|r| r.get::<_, String>(0).parse()).transpose()
}

/// Sets a subject's own level (the subject need not exist yet).
pub(crate) async fn set_subject_level(
    pool: &Pool,
    subject: &str,
    level: CompatibilityLevel,
) -> Result<(), RegistryError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO registry.subject_config (subject, compatibility) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
            &[&subject, &level.as_str()],
        )
        .await?;
    Ok(())
}

/// Removes a subject's own level; returns it, 40408 if none was set.
pub(crate) async fn delete_subject_level(
    pool: &Pool,
    subject: &str,
) -> Result<CompatibilityLevel, RegistryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "DELETE FROM registry.subject_config WHERE subject = $1 RETURNING compatibility",
            &[&subject],
        )
        .await?
        .ok_or_else(|| RegistryError::SubjectConfigNotFound(subject.to_owned()))?;
    row.get::<_, String>(0).parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(VersionSpec::parse("latest").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("-1").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("3").unwrap(), VersionSpec::Number(3));
        for bad in ["0", "-2", "abc", "2147483648", ""] {
            assert_eq!(
                VersionSpec::parse(bad).unwrap_err().error_code(),
                42202,
                "{bad}"
            );
        }
    }
}
