//! Controller API requests: the subject tail (up to the first newline) to
//! `Operation::parse`, the rest as the body of every request type through the API's own
//! `parse_body`. Never a panic; a tail that parses is exactly the one its operation's subject
//! has; an empty or blank body means the defaults.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_controller::bodies::parse_body;
use trellis_lattice::api::{
    DeleteModelRequest, DeployModelRequest, GetModelRequest, ListModelsRequest, Operation,
    PlanRequest, Subjects, UndeployModelRequest,
};

fn tail_of(op: &Operation) -> String {
    let subjects = Subjects::new("l");
    let subject = subjects.operation(op);
    let prefix = format!("{}.", subjects.model_prefix());
    subject[prefix.len()..].to_string()
}

fuzz_target!(|data: &[u8]| {
    let (tail, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(tail) = std::str::from_utf8(tail) {
        if let Some(op) = Operation::parse(tail) {
            assert_eq!(tail_of(&op), tail);
        }
    }
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let get = parse_body::<GetModelRequest>("model.get", body);
    let del = parse_body::<DeleteModelRequest>("model.del", body);
    let deploy = parse_body::<DeployModelRequest>("model.deploy", body);
    let undeploy = parse_body::<UndeployModelRequest>("model.undeploy", body);
    let plan = parse_body::<PlanRequest>("model.plan", body);
    let list = parse_body::<ListModelsRequest>("model.list", body);
    if blank {
        assert!(get.is_ok_and(|r| r.version.is_none()));
        assert!(del.is_ok_and(|r| r.version.is_none()));
        assert!(deploy.is_ok_and(|r| r.version.is_none()));
        assert!(undeploy.is_ok_and(|r| !r.non_destructive));
        assert!(plan.is_ok_and(|r| r.version.is_none()));
        assert!(list.is_ok_and(|r| r.offset == 0 && r.limit.is_none()));
    }
});
