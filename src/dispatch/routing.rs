//! Choosing a route for a number: the route asked for when it serves the
//! number, else the first route in config order whose prefixes match; and,
//! for a route that is down, the next one in config order that serves each
//! number. A plain value built from the routes' config, so validation can
//! ask it without a running dispatcher; the dispatcher holds one and swaps
//! it on reload.

use crate::channel::spec::Route;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no route named {0:?}")]
    Unknown(String),
    #[error("route {route:?} does not serve {to}")]
    NotServed { route: String, to: String },
    #[error("no route serves {0}")]
    NoRoute(String),
}

/// What choosing a route needs of one route: its name and prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    prefixes: Vec<String>,
}

impl Entry {
    fn serves(&self, e164: &str) -> bool {
        crate::config::serves(&self.prefixes, e164)
    }
}

/// The routes in config order, as far as choosing one is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    routes: Vec<Entry>,
}

impl Routing {
    pub fn new(routes: &[Route]) -> Routing {
        Routing {
            routes: routes.iter().map(|r| Entry { name: r.name.clone(), prefixes: r.prefixes.clone() }).collect(),
        }
    }

    /// The route a message goes through: the one asked for, else the first
    /// in config order whose prefixes match.
    pub fn resolve(&self, to: &str, asked: Option<&str>) -> Result<String, RouteError> {
        match asked {
            Some(name) => {
                let route =
                    self.routes.iter().find(|r| r.name == name).ok_or_else(|| RouteError::Unknown(name.to_string()))?;
                if route.serves(to) {
                    Ok(route.name.clone())
                } else {
                    Err(RouteError::NotServed { route: name.to_string(), to: to.to_string() })
                }
            }
            None => self
                .routes
                .iter()
                .find(|r| r.serves(to))
                .map(|r| r.name.clone())
                .ok_or_else(|| RouteError::NoRoute(to.to_string())),
        }
    }

    /// True when a route of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.routes.iter().any(|r| r.name == name)
    }

    /// The first route in config order that serves every number.
    pub fn catch_all(&self) -> Option<&str> {
        self.routes.iter().find(|r| r.prefixes.is_empty()).map(|r| r.name.as_str())
    }

    /// Where the due messages of `from` (a route that is down) go: for each
    /// number, the first route after `from` in config order that is `up`
    /// and serves it. `None` when no route after `from` is up.
    pub fn failover(
        &self,
        from: &str,
        up: impl Fn(&str) -> bool,
    ) -> Option<impl Fn(&str) -> Option<String> + Send + 'static> {
        let after = self.routes.iter().position(|r| r.name == from).map_or(0, |i| i + 1);
        let candidates: Vec<Entry> = self.routes[after..].iter().filter(|r| up(&r.name)).cloned().collect();
        if candidates.is_empty() {
            return None;
        }
        Some(move |to: &str| candidates.iter().find(|r| r.serves(to)).map(|r| r.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(routes: &[(&str, &[&str])]) -> Routing {
        Routing {
            routes: routes
                .iter()
                .map(|(name, prefixes)| Entry {
                    name: name.to_string(),
                    prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_route_whose_prefixes_match_is_chosen() {
        let r = routing(&[("ru", &["+7"]), ("de", &["+49"]), ("any", &[]), ("late", &["+49"])]);
        assert_eq!(r.resolve("+79161234567", None).ok(), Some("ru".to_string()));
        assert_eq!(r.resolve("+4915112345678", None).ok(), Some("de".to_string()));
        assert_eq!(r.resolve("+33612345678", None).ok(), Some("any".to_string()));
        assert_eq!(r.catch_all(), Some("any"));
    }

    #[test]
    fn a_route_asked_for_must_exist_and_serve_the_number() {
        let r = routing(&[("ru", &["+7"]), ("de", &["+49"])]);
        assert_eq!(r.resolve("+4915112345678", Some("de")).ok(), Some("de".to_string()));
        assert!(matches!(r.resolve("+4915112345678", Some("ru")), Err(RouteError::NotServed { .. })));
        assert!(matches!(r.resolve("+4915112345678", Some("fr")), Err(RouteError::Unknown(_))));
        assert!(matches!(r.resolve("+33612345678", None), Err(RouteError::NoRoute(_))));
        assert_eq!(r.catch_all(), None);
    }

    #[test]
    fn failover_takes_the_next_route_that_is_up_and_serves_the_number() {
        let r = routing(&[("a", &[]), ("b", &["+49"]), ("c", &[]), ("d", &[])]);
        let assign = r.failover("a", |n| n != "c").expect("routes after a are up");
        assert_eq!(assign("+4915112345678"), Some("b".to_string()));
        assert_eq!(assign("+79161234567"), Some("d".to_string()));
        assert!(r.failover("d", |_| true).is_none());
        assert!(r.failover("b", |n| n == "a").is_none());
    }
}
