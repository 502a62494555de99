//! `gen --s3`: generated objects uploaded to an S3 prefix.

use std::path::Path;

use futures_util::StreamExt;

/// Uploads at once.
const UPLOADS_IN_FLIGHT: usize = 8;

/// Splits `s3://bucket/prefix` into bucket and prefix (the prefix may be empty).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3://bucket/prefix URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Uploads every file of `dir` (flat) to `bucket` under `prefix`, keeping file names.
/// Returns the number of objects uploaded.
pub async fn upload_dir(
    s3: &aws_sdk_s3::Client,
    dir: &Path,
    bucket: &str,
    prefix: &str,
) -> Result<u64, String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let separator = if prefix.is_empty() || prefix.ends_with('/') {
        ""
    } else {
        "/"
    };
    let mut uploads = futures_util::stream::iter(files)
        .map(|path| {
            let s3 = s3.clone();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = format!("{prefix}{separator}{name}");
            async move {
                let body = aws_sdk_s3::primitives::ByteStream::from_path(&path)
                    .await
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body)
                    .send()
                    .await
                    .map_err(|error| {
                        format!(
                            "cannot upload s3://{bucket}/{key}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&error)
                        )
                    })?;
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(UPLOADS_IN_FLIGHT);
    let mut uploaded = 0;
    while let Some(result) = uploads.next().await {
        result?;
        uploaded += 1;
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://events/raw/2024"),
            Ok(("events".into(), "raw/2024".into()))
        );
        assert_eq!(
            parse_url("s3://events"),
            Ok(("events".into(), String::new()))
        );
        assert!(parse_url("events/raw").is_err());
        assert!(parse_url("s3:///raw").is_err());
    }
}
