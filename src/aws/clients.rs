//! The AWS service clients the operator uses, each with an interceptor that counts every
//! attempt, and every throttled answer, by service and operation for `/metrics`.

use aws_config::SdkConfig;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use super::error::{FailureKind, classify_code};

/// STS, counted.
pub fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(config)
            .interceptor(CountCalls)
            .build(),
    )
}

/// Organizations, counted.
pub fn organizations(config: &SdkConfig) -> aws_sdk_organizations::Client {
    aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(config)
            .interceptor(CountCalls)
            .build(),
    )
}

/// CloudFormation, counted.
pub fn cloudformation(config: &SdkConfig) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(config)
            .interceptor(CountCalls)
            .build(),
    )
}

/// IAM, counted.
pub fn iam(config: &SdkConfig) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(config)
            .interceptor(CountCalls)
            .build(),
    )
}

/// Records each attempt (retries included) once it has an answer or failed to get one.
#[derive(Debug)]
struct CountCalls;

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "orgconnect::CountCalls"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let throttled = context.response().is_some_and(|response| {
            let status = response.status().as_u16();
            (400..600).contains(&status)
                && classify_code(
                    error_code(
                        response.headers().get("x-amzn-query-error"),
                        response.body().bytes(),
                    )
                    .as_deref(),
                    Some(status),
                ) == FailureKind::Throttled
        });
        crate::metrics::aws_calls().record(metadata.service(), metadata.name(), throttled);
        Ok(())
    }
}

/// AWS's error code in an error answer: the `x-amzn-query-error` header (`Code;Sender`),
/// `<Code>` of the XML protocols, or `__type` of the JSON protocols (`prefix#Code`).
fn error_code(query_error: Option<&str>, body: Option<&[u8]>) -> Option<String> {
    if let Some(code) = query_error.and_then(|value| value.split(';').next()) {
        return Some(code.to_owned());
    }
    let body = std::str::from_utf8(body?).ok()?;
    if let Some((_, rest)) = body.split_once("<Code>") {
        return rest
            .split_once("</Code>")
            .map(|(code, _)| code.trim().to_owned());
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let kind = json.get("__type").or_else(|| json.get("code"))?.as_str()?;
    Some(kind.rsplit('#').next().unwrap_or(kind).to_owned())
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn finds_the_code_in_every_protocol() {
        let xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                    <Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert_eq!(error_code(None, Some(xml)).as_deref(), Some("Throttling"));
        let json =
            br#"{"__type":"com.amazonaws.organizations#TooManyRequestsException","Message":"x"}"#;
        assert_eq!(
            error_code(None, Some(json)).as_deref(),
            Some("TooManyRequestsException")
        );
        assert_eq!(
            error_code(None, Some(br#"{"__type":"AccessDeniedException"}"#)).as_deref(),
            Some("AccessDeniedException")
        );
        assert_eq!(
            error_code(Some("Throttling;Sender"), Some(b"{}")).as_deref(),
            Some("Throttling")
        );
        assert_eq!(error_code(None, Some(b"")), None);
        assert_eq!(error_code(None, Some(b"\xff\xfe")), None);
        assert_eq!(error_code(None, None), None);
    }
}
