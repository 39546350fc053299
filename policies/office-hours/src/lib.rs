//! Signing only within a UTC time window on given weekdays:
//! `{"start": "08:00", "end": "18:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]}`.
//! The window includes `start` and excludes `end`; `end` before `start` spans midnight.

use keyward_policy::{Decision, SignRequest};
use serde::Deserialize;

/// Settings of `office-hours`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Opening time, `HH:MM` UTC.
    pub start: String,
    /// Closing time, `HH:MM` UTC.
    pub end: String,
    /// Days signing is allowed: `mon` ... `sun` (default Monday to Friday).
    #[serde(default = "workdays")]
    pub weekdays: Vec<String>,
}

fn workdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .map(String::from)
        .to_vec()
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn minutes(hhmm: &str) -> Result<i64, String> {
    let bad = || format!("{hhmm:?} is not a time like 08:30");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Allows requests whose server time falls in the window.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let (Ok(start), Ok(end)) = (minutes(&settings.start), minutes(&settings.end)) else {
        return Decision::deny("office-hours settings are invalid");
    };
    let days = req.unix_time.div_euclid(86_400);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = DAYS[(days + 3).rem_euclid(7) as usize];
    let now = req.unix_time.rem_euclid(86_400) / 60;
    let in_window = if start <= end {
        now >= start && now < end
    } else {
        now >= start || now < end
    };
    if !settings.weekdays.iter().any(|d| d == weekday) {
        Decision::deny(format!("signing is not allowed on {weekday}"))
    } else if !in_window {
        Decision::deny(format!(
            "signing is allowed from {} to {} UTC",
            settings.start, settings.end
        ))
    } else {
        Decision::Allow
    }
}

/// Checks the times and day names.
pub fn validate(settings: &Settings) -> Result<(), String> {
    minutes(&settings.start)?;
    minutes(&settings.end)?;
    if let Some(bad) = settings
        .weekdays
        .iter()
        .find(|d| !DAYS.contains(&d.as_str()))
    {
        return Err(format!(
            "{bad:?} is not a weekday; use mon, tue, wed, thu, fri, sat, sun"
        ));
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::{DEFAULT_UNIX_TIME, request};

    fn settings(start: &str, end: &str) -> Settings {
        Settings {
            start: start.into(),
            end: end.into(),
            weekdays: workdays(),
        }
    }

    // DEFAULT_UNIX_TIME is Monday 12:00 UTC.
    #[test]
    fn allows_inside_the_window() {
        let req = request().build();
        assert_eq!(evaluate(&req, &settings("08:00", "18:00")), Decision::Allow);
    }

    #[test]
    fn denies_outside_the_window_and_on_other_days() {
        let evening = request().at_unix(DEFAULT_UNIX_TIME + 7 * 3600).build();
        assert_eq!(
            evaluate(&evening, &settings("08:00", "18:00")).name(),
            "deny"
        );
        let saturday = request().at_unix(DEFAULT_UNIX_TIME + 5 * 86_400).build();
        assert_eq!(
            evaluate(&saturday, &settings("08:00", "18:00")),
            Decision::deny("signing is not allowed on sat")
        );
    }

    #[test]
    fn windows_may_span_midnight() {
        let night = request().at_unix(DEFAULT_UNIX_TIME + 11 * 3600).build(); // 23:00
        assert_eq!(
            evaluate(&night, &settings("22:00", "06:00")),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&request().build(), &settings("22:00", "06:00")).name(),
            "deny"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(validate(&settings("8am", "18:00")).is_err());
        assert!(validate(&settings("08:00", "24:00")).is_err());
        let mut s = settings("08:00", "18:00");
        s.weekdays.push("someday".into());
        assert!(validate(&s).is_err());
    }
}
