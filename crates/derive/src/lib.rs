//! `#[derive(Table)]` for dlt-rs: a resource's columns (names, types, nullability, keys) from
//! a Rust struct, the Rust answer to dlt's Pydantic models.
//!
//! The derive implements `dlt_core::typed::Table` (and `dlt_core::typed::ColumnType`, so the
//! struct can be a `json` field of another table). Types are mapped at compile time by the
//! field type's `ColumnType` implementation; column names are normalized at run time with dlt's
//! snake_case convention. See `dlt_core::typed` for the attributes and the type mapping.
//!
//! The generated code refers to `::dlt::dlt_core`; code that depends on `dlt-core` directly
//! says so with `#[dlt(crate = "dlt_core")]`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitBool, LitInt, LitStr, Path, Token, Type};

/// Derive `dlt_core::typed::Table` for a struct with named fields.
///
/// Field attributes: `#[dlt(primary_key, merge_key, unique, partition, cluster, sort,
/// hard_delete, skip, dedup_sort = "asc"|"desc", name = "…", data_type = "…", precision = N,
/// scale = N, timezone = bool, nullable = bool, description = "…")]`; serde's `rename`,
/// `rename_all`, `skip`, `skip_serializing` and `flatten` are respected. Struct attributes:
/// `#[dlt(table_name = "…", write_disposition = "append"|"replace"|"merge"|"skip",
/// crate = "path::to::dlt_core")]`.
#[proc_macro_derive(Table, attributes(dlt))]
pub fn derive_table(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    expand(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

#[derive(Default)]
struct ContainerAttrs {
    table_name: Option<LitStr>,
    write_disposition: Option<Ident>,
    krate: Option<Path>,
    rename_all: Option<LitStr>,
}

#[derive(Default)]
struct FieldAttrs {
    // serde
    rename: Option<LitStr>,
    serde_skip: bool,
    flatten: bool,
    // dlt
    skip: bool,
    name: Option<LitStr>,
    flags: Vec<Ident>,
    data_type: Option<Ident>,
    precision: Option<u32>,
    scale: Option<u32>,
    timezone: Option<bool>,
    nullable: Option<bool>,
    dedup_sort: Option<Ident>,
    description: Option<LitStr>,
    any_dlt: Option<Span>,
}

const FLAGS: &[&str] = &["primary_key", "merge_key", "unique", "partition", "cluster", "sort", "hard_delete"];

/// Consume the value of a serde attribute this derive does not read.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|m| skip_value(&m))?;
    }
    Ok(())
}

/// serde's `rename = "x"` or `rename(serialize = "x", …)`: the serialized name.
fn serialize_name(meta: &ParseNestedMeta) -> syn::Result<Option<LitStr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    let mut out = None;
    meta.parse_nested_meta(|m| {
        if m.path.is_ident("serialize") {
            out = Some(m.value()?.parse()?);
            Ok(())
        } else {
            skip_value(&m)
        }
    })?;
    Ok(out)
}

fn lit_str(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    meta.value()?.parse()
}

fn lit_u32(meta: &ParseNestedMeta) -> syn::Result<u32> {
    meta.value()?.parse::<LitInt>()?.base10_parse()
}

fn lit_bool(meta: &ParseNestedMeta) -> syn::Result<bool> {
    Ok(meta.value()?.parse::<LitBool>()?.value)
}

fn data_type_variant(s: &LitStr) -> syn::Result<Ident> {
    let v = match s.value().as_str() {
        "text" => "Text",
        "double" => "Double",
        "bool" => "Bool",
        "timestamp" => "Timestamp",
        "bigint" => "Bigint",
        "binary" => "Binary",
        "json" | "complex" => "Json",
        "decimal" => "Decimal",
        "wei" => "Wei",
        "date" => "Date",
        "time" => "Time",
        other => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "unknown dlt data type `{other}` (expected text, double, bool, timestamp, bigint, binary, json, \
                     decimal, wei, date or time)"
                ),
            ));
        }
    };
    Ok(Ident::new(v, s.span()))
}

fn container_attrs(input: &DeriveInput) -> syn::Result<ContainerAttrs> {
    let mut c = ContainerAttrs::default();
    for attr in &input.attrs {
        if attr.path().is_ident("dlt") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    c.table_name = Some(lit_str(&meta)?);
                } else if meta.path.is_ident("write_disposition") {
                    let s = lit_str(&meta)?;
                    let v = match s.value().as_str() {
                        "append" => "Append",
                        "replace" => "Replace",
                        "merge" => "Merge",
                        "skip" => "Skip",
                        _ => return Err(syn::Error::new(s.span(), "expected append, replace, merge or skip")),
                    };
                    c.write_disposition = Some(Ident::new(v, s.span()));
                } else if meta.path.is_ident("crate") {
                    c.krate = Some(lit_str(&meta)?.parse()?);
                } else {
                    return Err(meta.error("unknown struct attribute; expected table_name, write_disposition or crate"));
                }
                Ok(())
            })?;
        } else if attr.path().is_ident("serde") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename_all") {
                    if let Some(r) = serialize_name(&meta)? {
                        c.rename_all = Some(r);
                    }
                    Ok(())
                } else {
                    skip_value(&meta)
                }
            })?;
        }
    }
    Ok(c)
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut f = FieldAttrs::default();
    for attr in &field.attrs {
        if attr.path().is_ident("serde") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    if let Some(r) = serialize_name(&meta)? {
                        f.rename = Some(r);
                    }
                } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_serializing") {
                    f.serde_skip = true;
                } else if meta.path.is_ident("flatten") {
                    f.flatten = true;
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            })?;
        } else if attr.path().is_ident("dlt") {
            attr.parse_nested_meta(|meta| {
                f.any_dlt.get_or_insert(meta.path.span());
                let p = &meta.path;
                if let Some(flag) = FLAGS.iter().find(|n| p.is_ident(n)) {
                    f.flags.push(Ident::new(flag, p.span()));
                } else if p.is_ident("skip") {
                    f.skip = true;
                } else if p.is_ident("name") {
                    f.name = Some(lit_str(&meta)?);
                } else if p.is_ident("data_type") {
                    f.data_type = Some(data_type_variant(&lit_str(&meta)?)?);
                } else if p.is_ident("precision") {
                    f.precision = Some(lit_u32(&meta)?);
                } else if p.is_ident("scale") {
                    f.scale = Some(lit_u32(&meta)?);
                } else if p.is_ident("timezone") {
                    f.timezone = Some(lit_bool(&meta)?);
                } else if p.is_ident("nullable") {
                    f.nullable = Some(lit_bool(&meta)?);
                } else if p.is_ident("description") {
                    f.description = Some(lit_str(&meta)?);
                } else if p.is_ident("dedup_sort") {
                    let s = lit_str(&meta)?;
                    let v = match s.value().as_str() {
                        "asc" => "Asc",
                        "desc" => "Desc",
                        _ => return Err(syn::Error::new(s.span(), "expected \"asc\" or \"desc\"")),
                    };
                    f.dedup_sort = Some(Ident::new(v, s.span()));
                } else {
                    return Err(meta.error(
                        "unknown dlt field attribute; expected primary_key, merge_key, unique, partition, cluster, \
                         sort, hard_delete, skip, dedup_sort, name, data_type, precision, scale, timezone, nullable \
                         or description",
                    ));
                }
                Ok(())
            })?;
        }
    }
    Ok(f)
}

/// serde's `rename_all` rules, applied to a snake_case field name.
fn rename_field(rule: &LitStr, field: &str) -> syn::Result<String> {
    let pascal = || {
        let mut out = String::new();
        let mut upper = true;
        for ch in field.chars() {
            if ch == '_' {
                upper = true;
            } else if upper {
                out.push(ch.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(ch);
            }
        }
        out
    };
    Ok(match rule.value().as_str() {
        "lowercase" | "snake_case" => field.to_string(),
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let p = pascal();
            let mut chars = p.chars();
            match chars.next() {
                Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
                None => p,
            }
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        other => return Err(syn::Error::new(rule.span(), format!("unknown serde rename_all rule `{other}`"))),
    })
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Option" && matches!(s.arguments, syn::PathArguments::AngleBracketed(_))),
        Type::Group(g) => is_option(&g.elem),
        Type::Paren(p) => is_option(&p.elem),
        _ => false,
    }
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(n) => &n.named,
            _ => return Err(syn::Error::new(input.ident.span(), "derive(Table) needs a struct with named fields")),
        },
        _ => return Err(syn::Error::new(input.ident.span(), "derive(Table) supports structs only")),
    };
    let c = container_attrs(&input)?;
    let krate: Path = c.krate.clone().unwrap_or_else(|| syn::parse_quote!(::dlt::dlt_core));
    let typed = quote!(#krate::typed);
    let schema = quote!(#krate::schema);

    let mut columns = vec![];
    let mut keys = vec![];
    let mut skipped = vec![];
    let mut bounds: Vec<syn::WherePredicate> = vec![];
    for field in fields {
        let a = field_attrs(field)?;
        let ty = &field.ty;
        let ident = field.ident.as_ref().expect("named field");
        let key = match (&a.rename, &c.rename_all) {
            (Some(r), _) => r.value(),
            (None, Some(rule)) => rename_field(rule, &ident.unraw().to_string())?,
            (None, None) => ident.unraw().to_string(),
        };
        if a.serde_skip {
            continue;
        }
        if a.skip {
            skipped.push(quote!(__keys.push(::std::string::String::from(#key));));
            continue;
        }
        if a.flatten {
            if let Some(span) = a.any_dlt {
                return Err(syn::Error::new(span, "dlt field attributes do not apply to a #[serde(flatten)] field"));
            }
            bounds.push(syn::parse_quote!(#ty: #typed::Table));
            columns.push(quote_spanned!(ty.span()=> __cols.extend(<#ty as #typed::Table>::columns());));
            keys.push(quote_spanned!(ty.span()=> __keys.extend(<#ty as #typed::Table>::serde_keys());));
            skipped.push(quote_spanned!(ty.span()=> __keys.extend(<#ty as #typed::Table>::skipped_keys());));
            continue;
        }
        let source_name = a.name.as_ref().map(LitStr::value).unwrap_or_else(|| key.clone());
        let base = match &a.data_type {
            Some(dt) => {
                let nullable = a.nullable.unwrap_or_else(|| is_option(ty));
                quote!(#schema::Column {
                    name: __name,
                    data_type: ::core::option::Option::Some(#schema::DataType::#dt),
                    nullable: ::core::option::Option::Some(#nullable),
                    ..::core::default::Default::default()
                })
            }
            None => {
                bounds.push(syn::parse_quote!(#ty: #typed::ColumnType));
                quote_spanned!(ty.span()=> #typed::column_of::<#ty>(__name))
            }
        };
        let mut sets = vec![];
        for flag in &a.flags {
            // `unique` is an Option<bool> (dlt stores an explicit `false` too)
            if flag == "unique" {
                sets.push(quote!(__c.#flag = ::core::option::Option::Some(true);));
            } else {
                sets.push(quote!(__c.#flag = true;));
            }
        }
        let some = |name: &str, v: TokenStream2| {
            let f = format_ident!("{name}");
            quote!(__c.#f = ::core::option::Option::Some(#v);)
        };
        if let (Some(n), None) = (a.nullable, &a.data_type) {
            sets.push(some("nullable", quote!(#n)));
        }
        if let Some(p) = a.precision {
            sets.push(some("precision", quote!(#p)));
        }
        if let Some(s) = a.scale {
            sets.push(some("scale", quote!(#s)));
        }
        if let Some(t) = a.timezone {
            sets.push(some("timezone", quote!(#t)));
        }
        if let Some(d) = &a.dedup_sort {
            sets.push(some("dedup_sort", quote!(#schema::SortOrder::#d)));
        }
        if let Some(d) = &a.description {
            sets.push(some("description", quote!(::std::string::String::from(#d))));
        }
        columns.push(quote! {{
            let __name = #krate::naming::NamingConvention::normalize_path(&__naming, #source_name);
            #[allow(unused_mut)]
            let mut __c: #schema::Column = #base;
            #(#sets)*
            __cols.push(__c);
        }});
        keys.push(quote!(__keys.push(::std::string::String::from(#key));));
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut table_where = input.generics.where_clause.clone();
    if !input.generics.params.is_empty() {
        let w = table_where.get_or_insert_with(|| syn::parse_quote!(where));
        w.predicates.extend(bounds);
        w.predicates.push(syn::parse_quote!(#ident #ty_generics: #typed::__private::Serialize));
    }
    let table_name = c.table_name.as_ref().map(|t| {
        quote! {
            fn table_name() -> ::core::option::Option<&'static str> {
                ::core::option::Option::Some(#t)
            }
        }
    });
    let write_disposition = c.write_disposition.as_ref().map(|w| {
        quote! {
            fn write_disposition() -> ::core::option::Option<#schema::WriteDisposition> {
                ::core::option::Option::Some(#schema::WriteDisposition::#w)
            }
        }
    });
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #typed::Table for #ident #ty_generics #table_where {
            fn columns() -> ::std::vec::Vec<#schema::Column> {
                #[allow(unused_variables)]
                let __naming = <#krate::naming::SnakeCase as ::core::default::Default>::default();
                #[allow(unused_mut)]
                let mut __cols: ::std::vec::Vec<#schema::Column> = ::std::vec::Vec::new();
                #(#columns)*
                __cols
            }
            #table_name
            #write_disposition
            fn serde_keys() -> ::std::vec::Vec<::std::string::String> {
                #[allow(unused_mut)]
                let mut __keys: ::std::vec::Vec<::std::string::String> = ::std::vec::Vec::new();
                #(#keys)*
                __keys
            }
            fn skipped_keys() -> ::std::vec::Vec<::std::string::String> {
                #[allow(unused_mut)]
                let mut __keys: ::std::vec::Vec<::std::string::String> = ::std::vec::Vec::new();
                #(#skipped)*
                __keys
            }
        }

        #[automatically_derived]
        impl #impl_generics #typed::ColumnType for #ident #ty_generics #where_clause {
            const DATA_TYPE: #schema::DataType = #schema::DataType::Json;
        }
    })
}
