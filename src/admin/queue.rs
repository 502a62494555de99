//! The SQS source's part of `check`: the queue answers, each permission the source uses
//! works, and an object a waiting notification announces can be read.
//!
//! Nothing is changed: the permission checks for deleting and extending a message use
//! a receipt handle that names no message (the service answers "invalid receipt" when
//! the permission is there and "access denied" when it is not), and a message received
//! to find an announced object is visible again at once. That receive does count once
//! toward the queue's redrive limit, which the check's line says.

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName;

use super::Check;
use crate::source::aws::{clients, sdk_error};
use crate::source::notification::{self, Notification};

/// A receipt handle that names no message.
const NO_MESSAGE: &str = "tracktable-check-names-no-message";

/// The checks of an SQS source, in order; later ones are skipped when the queue does
/// not answer.
pub async fn check(
    queue_url: &str,
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> Vec<Check> {
    let (s3, sqs) = clients(region, endpoint_url).await;
    let mut checks = Vec::new();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await;
    let what = format!("SQS queue {queue_url} is reachable");
    let attributes = match attributes {
        Ok(attributes) => attributes,
        Err(error) => {
            checks.push(fail(
                what,
                format!(
                    "{}: check source.queue_url, the region and the AWS credentials; the loader \
                     needs sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and \
                     sqs:GetQueueAttributes on the queue and s3:GetObject on the bucket",
                    sdk_error(&error)
                ),
            ));
            return checks;
        }
    };
    let redrive = attributes
        .attributes()
        .is_some_and(|attributes| attributes.contains_key(&QueueAttributeName::RedrivePolicy));
    checks.push(Check {
        what,
        fix: None,
        warning: (!redrive).then(|| {
            "has no redrive policy: a message nobody can understand comes back forever; \
             give the queue a dead-letter queue"
                .to_owned()
        }),
    });

    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(1)
        .wait_time_seconds(0)
        .visibility_timeout(0)
        .send()
        .await;
    let what = "receive messages (sqs:ReceiveMessage)".to_owned();
    let body = match received {
        Ok(output) => {
            checks.push(pass(what));
            output
                .messages
                .unwrap_or_default()
                .into_iter()
                .find_map(|message| message.body)
        }
        Err(error) => {
            checks.push(fail(
                what,
                permission_fix("sqs:ReceiveMessage", &sdk_error(&error)),
            ));
            None
        }
    };

    let deleted = sqs
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(NO_MESSAGE)
        .send()
        .await;
    checks.push(permission(
        "delete loaded messages (sqs:DeleteMessage)",
        "sqs:DeleteMessage",
        deleted
            .err()
            .map(|error| (is_denied(error.code()), sdk_error(&error))),
    ));
    let extended = sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(NO_MESSAGE)
        .visibility_timeout(0)
        .send()
        .await;
    checks.push(permission(
        "keep loading messages invisible (sqs:ChangeMessageVisibility)",
        "sqs:ChangeMessageVisibility",
        extended
            .err()
            .map(|error| (is_denied(error.code()), sdk_error(&error))),
    ));
    checks.push(read_announced(&s3, body.as_deref()).await);
    checks
}

/// Reads the first byte of an object the waiting message announces.
async fn read_announced(s3: &aws_sdk_s3::Client, body: Option<&str>) -> Check {
    let object = body.and_then(|body| match notification::parse(body) {
        Ok(Notification::Created(objects)) => objects.into_iter().next(),
        _ => None,
    });
    let Some(object) = object else {
        return Check {
            what: "read announced objects (s3:GetObject)".into(),
            fix: None,
            warning: Some(
                "not tried: no notification of a new object was waiting on the queue; run \
                 check again while objects arrive"
                    .into(),
            ),
        };
    };
    let what = format!("read announced objects (s3:GetObject on {})", object.name());
    let read = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .range("bytes=0-0")
        .send()
        .await;
    match read {
        Ok(_) => pass(what),
        Err(error) => {
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&error).map(str::to_owned);
            let text = sdk_error(&error);
            match code.as_deref() {
                Some("NoSuchKey" | "NoSuchVersion") => Check {
                    what,
                    fix: None,
                    warning: Some(
                        "the object was deleted after it was announced; tracktable records \
                         such objects in _rejections"
                            .into(),
                    ),
                },
                _ => fail(what, permission_fix("s3:GetObject", &text)),
            }
        }
    }
}

/// A permission probed with a call that names no message: only "access denied" fails.
fn permission(what: &str, action: &str, error: Option<(bool, String)>) -> Check {
    match error {
        Some((true, text)) => fail(what.to_owned(), permission_fix(action, &text)),
        _ => pass(what.to_owned()),
    }
}

fn is_denied(code: Option<&str>) -> bool {
    code.is_some_and(|code| code.contains("AccessDenied") || code == "AuthorizationError")
}

fn permission_fix(action: &str, error: &str) -> String {
    format!("{error}: grant the loader's AWS identity {action}")
}

fn pass(what: String) -> Check {
    Check {
        what,
        fix: None,
        warning: None,
    }
}

fn fail(what: String, fix: String) -> Check {
    Check {
        what,
        fix: Some(fix),
        warning: None,
    }
}
