//! Full RRD dumps (`/host_rrd`, `/vm_rrd`): rrdtool's dump layout (`<rrd><version>0003</version><step>5</step>…`)
//! with one AVERAGE archive per step (5 s, 1 min, 1 h, 1 day), rows oldest first; JSON has the same structure.

use std::fmt::Write;

use serde_json::json;

use super::format::g15;
use super::metrics::Source;
use super::ARCHIVES;

pub(crate) fn render(sources: &[Source], now: i64, as_json: bool) -> String {
    let last = now - now.rem_euclid(5);
    if as_json {
        let ds: Vec<_> = sources
            .iter()
            .map(|s| {
                json!({"name": s.name, "type": "GAUGE", "minimal_heartbeat": 300.0, "min": 0.0, "max": "Infinity",
                       "last_ds": g15(s.value(last, 5)), "value": 0.0, "unknown_sec": 0})
            })
            .collect();
        let rra: Vec<_> = ARCHIVES
            .iter()
            .map(|(step, rows)| {
                let end = now - now.rem_euclid(*step);
                let db: Vec<Vec<String>> = (0..*rows)
                    .rev()
                    .map(|k| sources.iter().map(|s| g15(s.value(end - k * step, *step))).collect())
                    .collect();
                json!({"cf": "AVERAGE", "pdp_per_row": step / 5, "params": {"xff": 0.5},
                       "cdp_prep": sources.iter().map(|_| json!({"primary_value": 0.0, "secondary_value": 0.0,
                           "value": 0.0, "unknown_datapoints": 0})).collect::<Vec<_>>(),
                       "database": db})
            })
            .collect();
        return json!({"version": "0003", "step": 5, "lastupdate": last, "ds": ds, "rra": rra})
            .to_string();
    }
    let mut o = String::new();
    let _ = write!(
        o,
        "<rrd><version>0003</version><step>5</step><lastupdate>{last}</lastupdate>"
    );
    for s in sources {
        let _ = write!(
            o,
            "<ds><name>{}</name><type>GAUGE</type><minimal_heartbeat>300.0000</minimal_heartbeat><min>0.0</min>\
             <max>Infinity</max><last_ds>{}</last_ds><value>0.0</value><unknown_sec>0</unknown_sec></ds>",
            s.name,
            g15(s.value(last, 5))
        );
    }
    for (step, rows) in ARCHIVES {
        let end = now - now.rem_euclid(step);
        let _ = write!(o, "<rra><cf>AVERAGE</cf><pdp_per_row>{}</pdp_per_row><params><xff>0.5</xff></params><cdp_prep>", step / 5);
        for _ in sources {
            o.push_str(
                "<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value><value>0.0</value>\
                 <unknown_datapoints>0</unknown_datapoints></ds>",
            );
        }
        o.push_str("</cdp_prep><database>");
        for k in (0..rows).rev() {
            o.push_str("<row>");
            for s in sources {
                let _ = write!(o, "<v>{}</v>", g15(s.value(end - k * step, step)));
            }
            o.push_str("</row>");
        }
        o.push_str("</database></rra>");
    }
    o.push_str("</rrd>");
    o
}
