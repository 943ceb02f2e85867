//! Where a request goes once an HTTPRoute rule is chosen: a backend drawn by relative weight, its
//! Service's endpoints as the proxy's cluster view holds them (via the mesh's `resolve`, so that
//! lagging clusters answer 503 NC as for a VirtualService), mirrors, and header changes.

use rand::Rng;

use super::compile::Rule;
use crate::traffic::lag::Views;
use crate::traffic::mesh::{self, Decision, LocalReply};
use crate::traffic::request::ResponseFlag;
use crate::traffic::snapshot::ServiceKey;

/// Routes by `rule` (`None`: no rule matched, 404 NR); `parent` names the Service the request
/// was addressed to, for the proxy's own replies.
pub(crate) fn decide<'s>(
    views: Views<'s>,
    rule: Option<&'s Rule>,
    parent: Option<&ServiceKey>,
    rng: &mut impl Rng,
) -> Decision<'s> {
    let reply = |status, flag, service: Option<&ServiceKey>| {
        let mut d = Decision::reply(Err(LocalReply { status, flag, service: service.cloned() }), Vec::new());
        d.http_route = true;
        d
    };
    let Some(rule) = rule else { return reply(404, ResponseFlag::NoRoute, parent) };
    let mut mirrors = Vec::new();
    for (key, port, percent) in &rule.mirrors {
        if rng.random::<f64>() * 100.0 < *percent {
            mirrors.extend(mesh::resolve(views, Some(key), None, Some(i64::from(*port)), rng).ok());
        }
    }
    // A filter that cannot be applied, or no backend with weight: the proxy answers 500 itself.
    let direct_500 = |mirrors| {
        let mut d = Decision::reply(
            Err(LocalReply { status: 500, flag: ResponseFlag::None, service: parent.cloned() }),
            mirrors,
        );
        d.http_route = true;
        d
    };
    if !rule.unsupported.is_empty() || rule.total_weight == 0 {
        return direct_500(mirrors);
    }
    let mut draw = rng.random_range(0..rule.total_weight);
    let Some(backend) = rule.backends.iter().find(|b| {
        if draw < b.weight {
            return true;
        }
        draw -= b.weight;
        false
    }) else {
        return direct_500(mirrors);
    };
    let Ok((key, port)) = &backend.target else { return direct_500(mirrors) };
    Decision {
        primary: mesh::resolve(views, Some(key), None, Some(i64::from(*port)), rng),
        mirrors,
        request_headers: vec![&backend.request, &rule.request],
        response_headers: vec![&backend.response, &rule.response],
        http_route: true,
    }
}
