//! The xport document of `/rrd_updates` (XA `rrd_updates.ml`), in XML and in JSON (values as `%.15g` strings).

use std::fmt::Write;

use super::metrics::Source;

/// `%.15g` as OCaml's `Printf` writes it (`NaN`, `Infinity`, `0.0` for zero).
pub(crate) fn g15(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return "0.0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if !(-5..15).contains(&exp) {
        let s = format!("{v:.14e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!(
            "{}e{}{:02}",
            trim(m.to_owned()),
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    } else {
        let prec = (14 - exp).max(0) as usize;
        trim(format!("{v:.prec$}"))
    }
}

/// One `/rrd_updates` answer.
#[derive(Debug)]
pub(crate) struct Xport {
    pub start: i64,
    pub step: i64,
    pub end: i64,
    /// Row times, newest first.
    pub times: Vec<i64>,
    pub sources: Vec<Source>,
    pub cf: String,
}

impl Xport {
    fn value(&self, s: &Source, t: i64) -> f64 {
        let v = s.value(t, self.step);
        match self.cf.as_str() {
            "MIN" => v * 0.9,
            "MAX" => v * 1.1,
            _ => v,
        }
    }

    pub(crate) fn xml(&self) -> String {
        let mut o = String::with_capacity(256 + self.times.len() * self.sources.len() * 16);
        let _ = write!(
            o,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xport><meta><start>{}</start><step>{}</step><end>{}</end>\
             <rows>{}</rows><columns>{}</columns><legend>",
            self.start,
            self.step,
            self.end,
            self.times.len(),
            self.sources.len()
        );
        for s in &self.sources {
            let _ = write!(o, "<entry>{}</entry>", s.legend(&self.cf));
        }
        o.push_str("</legend></meta><data>");
        for t in &self.times {
            let _ = write!(o, "<row><t>{t}</t>");
            for s in &self.sources {
                let _ = write!(o, "<v>{}</v>", g15(self.value(s, *t)));
            }
            o.push_str("</row>");
        }
        o.push_str("</data></xport>");
        o
    }

    pub(crate) fn json(&self) -> String {
        let legend: Vec<String> = self.sources.iter().map(|s| s.legend(&self.cf)).collect();
        let data: Vec<serde_json::Value> = self
            .times
            .iter()
            .map(|t| {
                let values: Vec<String> = self
                    .sources
                    .iter()
                    .map(|s| g15(self.value(s, *t)))
                    .collect();
                serde_json::json!({"t": t, "values": values})
            })
            .collect();
        serde_json::json!({
            "meta": {
                "start": self.start,
                "step": self.step,
                "end": self.end,
                "rows": self.times.len(),
                "columns": self.sources.len(),
                "legend": legend,
            },
            "data": data,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::g15;

    #[test]
    fn printf_g15() {
        assert_eq!(g15(0.0282), "0.0282");
        assert_eq!(g15(0.0), "0.0");
        assert_eq!(g15(1024.0), "1024");
        assert_eq!(g15(f64::NAN), "NaN");
        assert_eq!(g15(1.5e20), "1.5e+20");
        assert_eq!(g15(1.0 / 3.0), "0.333333333333333");
    }
}
