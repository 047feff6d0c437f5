//! `geofence` filter plugin: passes a change when its point lies inside a lat/lon box (edges
//! included). Params: `lat`, `lon` column names (default "lat"/"lon"); `min_lat`, `max_lat`,
//! `min_lon`, `max_lon` (required). `min_lon > max_lon` means the box crosses the antimeridian.
//! A null, absent or non-numeric coordinate drops the change. Does not rewrite rows.

#![no_std]

use walcast_filter_sdk::{export_filter, panic_handler, Change, Name, ParamError, Params, Slot, Verdict};

panic_handler!();
export_filter!(init, filter);

#[derive(Clone, Copy)]
struct Config {
    lat: Name,
    lon: Name,
    min_lat: f64,
    max_lat: f64,
    min_lon: f64,
    max_lon: f64,
}

static CONFIG: Slot<Config> = Slot::new();

fn bounded(params: &Params, key: &str, limit: f64) -> Result<f64, ParamError> {
    let v = params.require_f64(key)?;
    if v < -limit || v > limit {
        let mut buf = [0u8; 64];
        let got = params.get_copied(key, &mut buf).map(|c| c.text).unwrap_or("");
        let expected = if limit == 90.0 { "between -90 and 90" } else { "between -180 and 180" };
        return Err(ParamError::invalid(key, got, expected));
    }
    Ok(v)
}

fn init(params: &Params) -> Result<(), ParamError> {
    let lat = params.get_text::<64>("lat")?.unwrap_or_else(|| Name::from_str("lat"));
    let lon = params.get_text::<64>("lon")?.unwrap_or_else(|| Name::from_str("lon"));
    let min_lat = bounded(params, "min_lat", 90.0)?;
    let max_lat = bounded(params, "max_lat", 90.0)?;
    let min_lon = bounded(params, "min_lon", 180.0)?;
    let max_lon = bounded(params, "max_lon", 180.0)?;
    if min_lat > max_lat {
        let mut buf = [0u8; 64];
        let got = params.get_copied("max_lat", &mut buf).map(|c| c.text).unwrap_or("");
        return Err(ParamError::invalid("max_lat", got, "at least min_lat"));
    }
    CONFIG.set(Config { lat, lon, min_lat, max_lat, min_lon, max_lon });
    Ok(())
}

fn coordinate(change: &Change, column: &str) -> Option<f64> {
    change.column(column)?.as_f64()
}

fn filter(change: &Change) -> Verdict {
    let cfg = match CONFIG.get() {
        Some(cfg) => cfg,
        None => return Verdict::fail("geofence: not initialised"),
    };
    let (lat, lon) = match (coordinate(change, &cfg.lat), coordinate(change, &cfg.lon)) {
        (Some(lat), Some(lon)) => (lat, lon),
        _ => return Verdict::Drop,
    };
    let lat_in = lat >= cfg.min_lat && lat <= cfg.max_lat;
    let lon_in = if cfg.min_lon <= cfg.max_lon {
        lon >= cfg.min_lon && lon <= cfg.max_lon
    } else {
        lon >= cfg.min_lon || lon <= cfg.max_lon
    };
    if lat_in && lon_in {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}
