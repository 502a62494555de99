//! report: errors as people read them.

/// An error and its causes, each said once: many errors quote their cause in their own
/// message, and others (tokio-postgres's "error connecting to server") keep it only in
/// their source.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(said.trim()) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read pipeline file p.toml: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server")]
    struct Silent(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let quoted = causes(&Quoting(missing()));
        assert_eq!(quoted.matches("not found").count(), 1, "{quoted}");
        let silent = causes(&Silent(missing()));
        assert_eq!(silent, format!("error connecting to server: {}", missing()));
    }
}
