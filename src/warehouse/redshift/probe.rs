//! probe: `tracktable check`'s walk through one tiny load, the loader's own way: a few
//! rows written by the loader's CSV writer, staged under the prefix as a load's parts
//! are, `COPY`ed with the loader's credentials and options into a temporary table, read
//! back and compared with what was written; then the table is dropped and the object
//! deleted. Each step is reported, with what to do when it fails. Nothing outside the
//! session's temporary table and the one staged object is touched.

use std::sync::Arc;

use super::RedshiftWarehouse;
use super::csv::{self, PartWriter};
use super::iam::IamAuth;
use super::session::Session;
use super::sql::{self, CHECK_TABLE, Credentials};
use super::stage::{Staged, Staging};
use crate::config::StagingFile;
use crate::warehouse::plan::Cell;
use crate::warehouse::postgres::PostgresWarehouse;

/// One step of the walk: what was tried, and the fix when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    pub fix: Option<String>,
}

impl Step {
    fn outcome(what: String, result: Result<(), String>) -> Step {
        Step {
            what,
            fix: result.err(),
        }
    }
}

/// The test rows: (id, text, timestamp in microseconds). The text holds what the CSV
/// must keep intact (a quote, a comma, a line break, a backslash, text reading `\N`,
/// non-ASCII), an empty string that must not become NULL, and a NULL.
const ROWS: [(i64, Option<&str>, Option<i64>); 3] = [
    (
        1,
        Some("say \"hi\", then\nleave \\N — ✓"),
        Some(1_704_164_645_123_456),
    ),
    (2, Some(""), Some(946_684_799_999_999)),
    (3, None, None),
];

/// The rows as the warehouse reads them back: each column's text, `None` for NULL.
fn expected() -> Vec<[Option<String>; 3]> {
    ROWS.iter()
        .map(|(id, text, at)| {
            let at = at.map(|micros| {
                let mut out = String::new();
                csv::timestamp(&mut out, micros);
                out
            });
            [Some(id.to_string()), text.map(str::to_owned), at]
        })
        .collect()
}

/// The test rows as one gzip CSV part, written by the loader's writer.
fn written() -> Result<Vec<csv::Part>, String> {
    let mut writer = PartWriter::new(1 << 20);
    for (id, text, at) in ROWS {
        writer
            .push(&[
                Some(Cell::BigInt(id)),
                text.map(|text| Cell::Text(text.into())),
                at.map(Cell::Timestamp),
            ])
            .map_err(|error| error.to_string())?;
    }
    writer.finish().map_err(|error| error.to_string())
}

impl RedshiftWarehouse {
    /// The S3 client the loader stages with.
    pub async fn staging_client(&self) -> aws_sdk_s3::Client {
        self.staging().await.client().clone()
    }

    /// `auth = "iam"`: where each connection's temporary credentials come from.
    pub fn iam(&self) -> Option<&IamAuth> {
        self.iam.as_deref()
    }

    /// The connection settings (URL, password, TLS) every session opens with.
    pub fn connection(&self) -> &PostgresWarehouse {
        &self.connection
    }

    /// Walks one tiny load through staging, `COPY`, reading back and clean-up; one
    /// [`Step`] each. Clean-up is tried whatever failed before it.
    pub async fn round_trip(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let staging = self.staging().await;
        let file = &self.file.staging;
        let what = format!(
            "stage a gzip CSV test object under s3://{}/{}",
            file.bucket, file.prefix
        );
        let staged = match written() {
            Ok(parts) => staging
                .put(self.schema(), CHECK_TABLE, 0, "check", parts)
                .await
                .map_err(|error| {
                    format!(
                        "{error}: allow s3:PutObject on arn:aws:s3:::{}/{}* to the AWS identity tracktable runs as",
                        file.bucket, file.prefix
                    )
                }),
            Err(error) => Err(format!("cannot write the test CSV: {error}")),
        };
        let staged = match staged {
            Ok(staged) => {
                steps.push(Step::outcome(what, Ok(())));
                staged
            }
            Err(fix) => {
                steps.push(Step::outcome(what, Err(fix)));
                return steps;
            }
        };
        match self.session().await {
            Ok(session) => {
                self.copy_back(&session, &staging, &staged, &mut steps)
                    .await
            }
            Err(error) => steps.push(Step::outcome(
                "open a session for COPY".into(),
                Err(error.to_string()),
            )),
        }
        let what = format!("delete the staged test object {}", staged.source.url);
        let removed = staging.try_remove(&staged).await.map_err(|error| {
            format!(
                "{error}: allow s3:DeleteObject on arn:aws:s3:::{}/{}* (staged objects are removed after each load)",
                file.bucket, file.prefix
            )
        });
        steps.push(Step::outcome(what, removed));
        steps
    }

    /// Within one session: the temporary table created, the test object `COPY`ed into
    /// it, read back and compared, and the table dropped.
    async fn copy_back(
        &self,
        session: &Session,
        staging: &Arc<Staging>,
        staged: &Staged,
        steps: &mut Vec<Step>,
    ) {
        let created = session
            .execute(
                &sql::create_check_table(CHECK_TABLE),
                "create the temporary table",
            )
            .await
            .map(drop)
            .map_err(|error| error.to_string());
        let failed = created.is_err();
        steps.push(Step::outcome(
            format!("create temporary table {CHECK_TABLE}"),
            created,
        ));
        if failed {
            return;
        }
        let copied = self.copy(session, staging, staged).await;
        let copied_ok = copied.1.is_ok();
        steps.push(Step::outcome(copied.0, copied.1));
        if copied_ok {
            let read = session
                .query(&sql::select_check_rows(CHECK_TABLE), "read the copied rows")
                .await
                .map_err(|error| error.to_string())
                .and_then(|rows| {
                    let read: Vec<[Option<String>; 3]> = rows
                        .iter()
                        .map(|row| {
                            [0, 1, 2].map(|i| row.try_get(i).ok().flatten().map(str::to_owned))
                        })
                        .collect();
                    compare(&expected(), &read)
                });
            steps.push(Step::outcome(
                "read the copied rows back as written".into(),
                read,
            ));
        }
        let dropped = session
            .execute(&sql::drop_stage(CHECK_TABLE), "drop the temporary table")
            .await
            .map(drop)
            .map_err(|error| error.to_string());
        steps.push(Step::outcome(
            format!("drop temporary table {CHECK_TABLE}"),
            dropped,
        ));
    }

    /// The `COPY` step: its description (the credentials and region it presents) and
    /// outcome.
    async fn copy(
        &self,
        session: &Session,
        staging: &Staging,
        staged: &Staged,
    ) -> (String, Result<(), String>) {
        let file = &self.file.staging;
        let credentials = match self.copy_credentials(staging).await {
            Ok(credentials) => credentials,
            Err(error) => {
                return (
                    "COPY the test object into the temporary table".into(),
                    Err(error.to_string()),
                );
            }
        };
        let what = format!(
            "COPY the test object into the temporary table as a load does ({}, {})",
            presented(&credentials),
            file.region.as_deref().map_or_else(
                || "the cluster's region".to_owned(),
                |region| format!("REGION {region}")
            )
        );
        let statement = self.copy_statement(
            CHECK_TABLE,
            &sql::CHECK_COLUMNS,
            &staged.source,
            &credentials,
        );
        // What was loaded is judged by reading it back: the count in COPY's reply
        // is not relied on.
        let result = match session.execute(&statement, "COPY the test object").await {
            Ok(_) => Ok(()),
            Err(error) => {
                let message = error.to_string();
                let bucket_region = if wrong_region(&message) {
                    bucket_region(staging).await
                } else {
                    None
                };
                Err(copy_fix(
                    &message,
                    &credentials,
                    file,
                    bucket_region.as_deref(),
                ))
            }
        };
        (what, result)
    }
}

/// The credentials a `COPY` presents, as a person names them (no secret).
fn presented(credentials: &Credentials) -> String {
    match credentials {
        Credentials::DefaultIamRole => "IAM_ROLE default".into(),
        Credentials::IamRole(role) => format!("IAM_ROLE {role}"),
        Credentials::Keys { id, token, .. } => format!(
            "ACCESS_KEY_ID {id}{}",
            if token.is_some() {
                " with SESSION_TOKEN"
            } else {
                ""
            }
        ),
    }
}

/// Whether a `COPY`'s error says the bucket is in another region than the one it
/// looked in.
fn wrong_region(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("permanentredirect")
        || message.contains("must be addressed using the specified endpoint")
}

/// The staging bucket's region, as S3 tells it (`None` when it will not).
async fn bucket_region(staging: &Staging) -> Option<String> {
    let location = staging
        .client()
        .get_bucket_location()
        .bucket(staging.bucket())
        .send()
        .await
        .ok()?;
    // No constraint is us-east-1; `EU` is the old name of eu-west-1.
    Some(match location.location_constraint().map(|c| c.as_str()) {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(region) => region.to_owned(),
    })
}

/// What to do about a `COPY` the cluster refused: its words, then the fix for the
/// refusals a pipeline file or an IAM setting causes.
pub fn copy_fix(
    message: &str,
    credentials: &Credentials,
    staging: &StagingFile,
    bucket_region: Option<&str>,
) -> String {
    let lower = message.to_ascii_lowercase();
    let (bucket, prefix) = (&staging.bucket, &staging.prefix);
    let read = format!(
        "s3:GetObject on arn:aws:s3:::{bucket}/{prefix}* and s3:ListBucket on arn:aws:s3:::{bucket}"
    );
    let hint = if lower.contains("not authorized to get credentials of role")
        || lower.contains("not authorized to assume iam role")
    {
        match credentials {
            Credentials::IamRole(role) => format!(
                "the cluster may not use IAM role {role}: attach it to the cluster (aws redshift \
                 modify-cluster-iam-roles --cluster-identifier CLUSTER --add-iam-roles {role}; on \
                 Serverless, to the workgroup's namespace), let its trust policy allow \
                 redshift.amazonaws.com to call sts:AssumeRole, allow it {read}, and check that \
                 `[warehouse.staging] iam_role` is its exact ARN"
            ),
            _ => format!(
                "the cluster has no default IAM role it may use: set one (aws redshift \
                 modify-cluster-iam-roles --default-iam-role-arn ROLE_ARN), trusted by \
                 redshift.amazonaws.com and allowed {read}, or name a role in \
                 `[warehouse.staging] iam_role`"
            ),
        }
    } else if wrong_region(message) {
        let looked = staging.region.as_deref().map_or_else(
            || "the cluster's region".to_owned(),
            |region| format!("region {region}"),
        );
        let known = bucket_region
            .map(|region| format!(" (region = \"{region}\")"))
            .unwrap_or_default();
        format!(
            "bucket {bucket} is not in {looked}: set `[warehouse.staging] region` to the bucket's \
             region{known}"
        )
    } else if lower.contains("access denied") || lower.contains("accessdenied") {
        let who = match credentials {
            Credentials::IamRole(role) => format!("IAM role {role}"),
            Credentials::DefaultIamRole => "the cluster's default IAM role".into(),
            Credentials::Keys { id, .. } => format!("access key {id}"),
        };
        format!("allow {who} {read}")
    } else if lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("expiredtoken")
        || lower.contains("token is expired")
    {
        "S3 does not accept the access keys COPY presented: check the variables \
         `[warehouse.staging] access_key_id_env` and `secret_access_key_env` name, or the AWS \
         chain's keys (access_keys_from_aws_chain)"
            .to_owned()
    } else if lower.contains("nosuchbucket") {
        format!("there is no bucket {bucket}: check `[warehouse.staging] bucket`")
    } else {
        "loads would fail the same way".to_owned()
    };
    format!("{message}: {hint}")
}

/// Whether the rows read back are the rows written; otherwise the first difference.
fn compare(written: &[[Option<String>; 3]], read: &[[Option<String>; 3]]) -> Result<(), String> {
    if read.len() != written.len() {
        return Err(format!(
            "read {} rows back where {} were copied",
            read.len(),
            written.len()
        ));
    }
    for (wrote, got) in written.iter().zip(read) {
        let id = wrote[0].as_deref().unwrap_or_default();
        for ((column, wrote), got) in sql::CHECK_COLUMNS.iter().zip(wrote).zip(got) {
            if wrote != got {
                return Err(format!(
                    "column {column} of row {id} read back as {got:?} where {wrote:?} was written: \
                     the cluster reads the staged CSV differently from the loader"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging(region: Option<&str>) -> StagingFile {
        toml::from_str(&format!(
            "bucket = \"b\"\nprefix = \"p/\"\niam_role = \"default\"\n{}",
            region
                .map(|r| format!("region = \"{r}\"\n"))
                .unwrap_or_default()
        ))
        .expect("a staging table")
    }

    #[test]
    fn the_test_rows_are_written_by_the_loaders_writer_and_read_back_as_text() {
        let parts = written().expect("written");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].rows, 3);
        let rows = expected();
        assert_eq!(
            rows[0][2].as_deref(),
            Some("2024-01-02 03:04:05.123456"),
            "as the cluster prints a timestamp"
        );
        assert_eq!(compare(&rows, &rows), Ok(()));
        let mut changed = rows.clone();
        changed[1][1] = None;
        let error = compare(&rows, &changed).expect_err("an empty string read as NULL");
        assert!(
            error.starts_with("column text of row 2 read back as None where Some(\"\")"),
            "{error}"
        );
        assert!(compare(&rows, &rows[..2]).is_err());
    }

    #[test]
    fn a_refused_copy_says_what_to_fix() {
        let role = Credentials::IamRole("arn:aws:iam::1:role/copy".into());
        let fix = copy_fix(
            "Not authorized to get credentials of role arn:aws:iam::1:role/copy",
            &role,
            &staging(None),
            None,
        );
        assert!(
            fix.contains("may not use IAM role arn:aws:iam::1:role/copy")
                && fix.contains("--add-iam-roles arn:aws:iam::1:role/copy")
                && fix.contains("redshift.amazonaws.com to call sts:AssumeRole")
                && fix.contains("s3:GetObject on arn:aws:s3:::b/p/*"),
            "{fix}"
        );
        let fix = copy_fix(
            "User arn:aws:redshift:x is not authorized to assume IAM Role default",
            &Credentials::DefaultIamRole,
            &staging(None),
            None,
        );
        assert!(fix.contains("--default-iam-role-arn"), "{fix}");
        let redirect = "S3ServiceException:The bucket you are attempting to access must be \
                        addressed using the specified endpoint.,Status 301,Error PermanentRedirect";
        let fix = copy_fix(
            redirect,
            &role,
            &staging(Some("eu-west-1")),
            Some("us-east-1"),
        );
        assert!(
            fix.ends_with(
                "bucket b is not in region eu-west-1: set `[warehouse.staging] region` to the \
                 bucket's region (region = \"us-east-1\")"
            ),
            "{fix}"
        );
        let fix = copy_fix(redirect, &role, &staging(None), None);
        assert!(fix.contains("is not in the cluster's region"), "{fix}");
        let fix = copy_fix(
            "S3ServiceException:Access Denied,Status 403",
            &role,
            &staging(None),
            None,
        );
        assert!(
            fix.ends_with("allow IAM role arn:aws:iam::1:role/copy s3:GetObject on arn:aws:s3:::b/p/* and s3:ListBucket on arn:aws:s3:::b"),
            "{fix}"
        );
        let fix = copy_fix("syntax error", &role, &staging(None), None);
        assert_eq!(fix, "syntax error: loads would fail the same way");
    }
}
