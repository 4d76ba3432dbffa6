//! Durations as users write them in specs (`30s`, `10m`, `1h30m`, `8760h`): the Go
//! format the API server's CEL rules accept.

use std::time::Duration;

/// Parses a duration such as `90s`, `10m` or `1h30m`.
pub fn parse_duration(value: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_formats_the_schema_allows() {
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("8760h").ok(),
            Some(Duration::from_secs(8760 * 3600))
        );
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
