//! The input fields a request or a configuration can get wrong, named once: errors carry
//! the field as a value, transports write its name (and the REST facade maps it to
//! CAMARA's own names and codes) without comparing strings.

use std::fmt;

macro_rules! fields {
    ($($variant:ident => $name:literal,)*) => {
        /// A field of a request, a record or a configuration entry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Field {
            /// The field's name in the gRPC contract and the CLI's messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }
        }
    };
}

fields! {
    Aliases => "aliases",
    Carrier => "carrier",
    BaseUrl => "base_url",
    Carriers => "carriers",
    CompleteUntil => "complete_until",
    CountryCode => "country_code",
    Covers => "covers",
    CustomerRef => "customer_ref",
    CustomerRefs => "customer_refs",
    ExpireTime => "expire_time",
    FromCarrier => "from_carrier",
    Id => "id",
    Kind => "kind",
    Kinds => "kinds",
    MaxAgeHours => "max_age_hours",
    MaxConcurrency => "max_concurrency",
    MaxLag => "max_lag",
    MccMnc => "mcc_mnc",
    Name => "name",
    OccurredAt => "occurred_at",
    OwnerSince => "owner_since",
    OwnerSinceDate => "owner_since_date",
    PageSize => "page_size",
    PageToken => "page_token",
    PhoneNumber => "phone_number",
    Ranges => "ranges",
    Region => "region",
    ResumeAfter => "resume_after",
    Scopes => "scopes",
    ScopesCarriers => "scopes.carriers",
    ScopesKinds => "scopes.kinds",
    ScopesPrefix => "scopes.prefix",
    Since => "since",
    Sink => "sink",
    SinkToken => "sink_token",
    Source => "source",
    SourceEventId => "source_event_id",
    Start => "start",
    Tenant => "tenant",
    TimePrecision => "time_precision",
    ToCarrier => "to_carrier",
    TokenExpireTime => "token_expire_time",
    TokenUrl => "token_url",
    TrackingSince => "tracking_since",
    Until => "until",
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
