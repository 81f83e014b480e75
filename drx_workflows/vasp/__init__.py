"""The relaxation-workflow stage: VASP input sets, custodian, FireWorks workflows, submission, status."""
