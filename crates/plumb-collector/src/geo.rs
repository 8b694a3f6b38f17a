//! Where a visitor is, from their address, which is then dropped. Country works with no setup
//! (the regional internet registries' delegations, compiled in by `iptocc`: the country an
//! address is registered in). With an MMDB file configured — DB-IP Lite (CC BY 4.0) or a MaxMind
//! GeoIP2/GeoLite2 City or Country database — country, region and city come from it.

use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// ISO 3166-1 alpha-2, or empty.
    pub country: String,
    /// Region (state, province) and city names in English, or empty.
    pub region: String,
    pub city: String,
}

pub struct Geo {
    db: Option<Reader<Vec<u8>>>,
    /// DB-IP's data (its own files say so in their type; ip-location-db's copies in their name).
    dbip: bool,
}

impl Geo {
    /// Without a file: countries only. A file that cannot be read or is not an MMDB is an error
    /// naming it.
    pub fn open(db: Option<&Path>) -> Result<Self, String> {
        let Some(path) = db else { return Ok(Geo { db: None, dbip: false }) };
        let reader = Reader::open_readfile(path)
            .map_err(|e| format!("cannot read the geolocation database {}: {e}", path.display()))?;
        let named = |s: &str| s.to_ascii_lowercase().replace('-', "").contains("dbip");
        let dbip = named(&reader.metadata().database_type) || named(&path.display().to_string());
        Ok(Geo { db: Some(reader), dbip })
    }

    /// The notice the database's licence asks to show, and the address it links to, if any
    /// (DB-IP Lite, CC BY 4.0: a link back to DB-IP).
    pub fn attribution(&self) -> Option<(&'static str, &'static str)> {
        self.dbip.then_some(("IP Geolocation by DB-IP", "https://db-ip.com/"))
    }

    pub fn locate(&self, ip: IpAddr) -> Place {
        // `::ffff:a.b.c.d` is an IPv4 visitor.
        let ip = ip.to_canonical();
        let from_db = self
            .db
            .as_ref()
            .and_then(|db| db.lookup(ip).ok()?.decode::<Record>().ok().flatten())
            .map(Record::place)
            .filter(|p| !p.country.is_empty());
        from_db.unwrap_or_else(|| Place {
            country: iptocc::country_code(ip).filter(|c| c.len() == 2).unwrap_or_default().to_owned(),
            ..Place::default()
        })
    }
}

/// A record in either layout: DB-IP Lite's flat one (`country_code`, `state1`, `city`) or
/// MaxMind's nested one (`country.iso_code`, `subdivisions[0].names.en`, `city.names.en`).
/// Only these fields are decoded; the rest of a record (other languages, coordinates…) is
/// skipped, which matters on every hit.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Record {
    country_code: Option<String>,
    country: Option<Coded>,
    state1: Option<String>,
    subdivisions: Vec<Named>,
    city: Option<City>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Coded {
    iso_code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    names: Names,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Names {
    en: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum City {
    Flat(String),
    Named(Named),
}

impl Record {
    fn place(self) -> Place {
        let country = self.country_code.or(self.country.and_then(|c| c.iso_code)).unwrap_or_default();
        let region = self.state1.or_else(|| self.subdivisions.into_iter().next().and_then(|s| s.names.en));
        let city = match self.city {
            Some(City::Flat(c)) => Some(c),
            Some(City::Named(n)) => n.names.en,
            None => None,
        };
        Place {
            country: country.to_ascii_uppercase(),
            region: region.unwrap_or_default(),
            city: city.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn countries_need_no_database_and_mapped_addresses_are_ipv4() {
        let g = Geo::open(None).unwrap();
        let at = |ip: &str| g.locate(ip.parse().unwrap()).country;
        assert_eq!(at("8.8.8.8"), "US");
        assert_eq!(at("::ffff:8.8.8.8"), "US");
        assert_eq!(at("2001:4860:4860::8888"), "US");
        assert_eq!(at("193.99.144.80"), "DE");
        assert_eq!(at("192.168.1.10"), "", "private addresses are nowhere");
        assert_eq!(g.attribution(), None);
        let missing = Geo::open(Some(Path::new("/nonexistent.mmdb"))).err().unwrap_or_default();
        assert!(missing.contains("/nonexistent.mmdb"), "{missing}");
    }

    #[test]
    fn both_record_layouts_give_country_region_and_city() {
        let dbip = json!({"country_code": "de", "state1": "Berlin", "city": "Berlin (Mitte)"});
        let maxmind = json!({
            "country": {"iso_code": "FR", "names": {"en": "France"}},
            "subdivisions": [{"iso_code": "IDF", "names": {"en": "Île-de-France"}}],
            "city": {"names": {"en": "Paris", "fr": "Paris"}},
        });
        let p = |country: &str, region: &str, city: &str| Place {
            country: country.into(),
            region: region.into(),
            city: city.into(),
        };
        let place_of = |v: serde_json::Value| serde_json::from_value::<Record>(v).unwrap().place();
        assert_eq!(place_of(dbip), p("DE", "Berlin", "Berlin (Mitte)"));
        assert_eq!(place_of(maxmind), p("FR", "Île-de-France", "Paris"));
        assert_eq!(place_of(json!({"country": {"iso_code": "JP"}})), p("JP", "", ""));
    }
}
